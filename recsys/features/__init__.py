"""Feast glue: the feature repo's store, its definitions and its state. Everything in recsys
that opens Feast goes through this package, so Feast is imported after the switch below."""

import typeguard


def _skip_feast_type_checks() -> None:
    """Feast decorates about 240 functions with typeguard's @typechecked, which parses
    the decorated function's whole module again for each one when feast is imported: about
    half of `import feast` (14-16 s against 7.3 s without it, measured on two cores), paid by
    every command that reads the feature store. recsys hands Feast only objects it built
    from the repo's schema, so in its processes the decorator leaves functions as they are,
    as typeguard itself does under `python -O`. Set before anything imports feast."""

    def typechecked(target=None, **_options):
        return target if target is not None else (lambda decorated: decorated)

    typeguard.typechecked = typechecked


_skip_feast_type_checks()

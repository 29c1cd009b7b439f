"""melu (MeLU): MAML with local updates on the decision layers only (the last two layers of
the network); the embeddings, the user's included, and the layers below are global and updated
only by the outer loop."""

from recsys.models.meta import UserTaskLearner


class MeLU(UserTaskLearner, name="melu"):
    adapt_user_embedding = False
    first_adapted_layer = -2  # the decision layers: the last two linear layers

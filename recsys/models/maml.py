"""maml: users as tasks; the inner loop adapts every layer of the network and the user's own
embedding (which starts from the content prior) on the user's first interactions; the outer
loop learns those starting points from the rows that follow."""

from recsys.models.meta import UserTaskLearner


class MAML(UserTaskLearner, name="maml"):
    adapt_user_embedding = True

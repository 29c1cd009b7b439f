"""melu (MeLU): MAML with local updates on the decision layers only (the network's layers);
the embeddings, the user's included, are global and updated only by the outer loop."""

from recsys.models.meta import UserTaskLearner


class MeLU(UserTaskLearner):
    adapt_user_embedding = False

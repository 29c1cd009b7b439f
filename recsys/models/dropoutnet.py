"""dropoutnet (DropoutNet): trains with user and item ID rows dropped at random to the cold
path (the content prior), so the profile and context features learn to carry the prediction;
at serving, cold IDs take exactly that path. It is the shared base of the cold-start models
(models/cold.py) with nothing added."""

from recsys.models.cold import ColdStartModel


class DropoutNet(ColdStartModel, name="dropoutnet"):
    pass

"""Retrieval: a retrieval run's item vectors of the whole catalogue (`catalogue`) in a FAISS
index beside the run (`index`)."""

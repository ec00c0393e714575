"""FAISS: index types by factory string, the automatic choice, recall, threshold, results."""

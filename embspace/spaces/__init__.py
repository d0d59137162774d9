"""Structure between two spaces over the same rows: linear CKA (biased and unbiased), mutual-kNN alignment,
orthogonal Procrustes residual — streamed, exact at any N — and :func:`compare_spaces` for two dumps of the same rows
(before / after), with bootstrap intervals and the rows whose neighbourhoods changed most."""

from embspace.spaces.cka import cka_from_sums, hsic_biased, hsic_unbiased
from embspace.spaces.neighbours import KNN_K, mutual_knn, neighbours_of, overlap, self_neighbours
from embspace.spaces.procrustes import procrustes_from_sums
from embspace.spaces.sums import SpaceSums, stream_sums

__all__ = ["KNN_K", "SpaceSums", "cka_from_sums", "hsic_biased", "hsic_unbiased", "mutual_knn", "neighbours_of",
           "overlap", "procrustes_from_sums", "self_neighbours", "stream_sums"]

"""Figures of reports and trajectories (matplotlib, no pyplot): every function returns a Figure.

==================  ==================================================================  ===============
function            what it shows                                                       reads
==================  ==================================================================  ===============
``curves``          metrics along training (gap, uniformity, alignment, recall, …)      trajectories
``plane``           the uniformity–alignment plane (Wang & Isola 2020)                  reports, runs
``spectrum``        singular values per modality (log–log), RankMe / effective rank     reports
``histograms``      cosine similarity of matched / unmatched / within-modality pairs    a report
``embedding_map``   both modalities in 2-D (PCA or UMAP), pairs and the gap arrow       embeddings
``before_after``    key metrics and histograms of two reports side by side              two reports
``reliability``     zero-shot accuracy against confidence per bin, with each ECE        reports
``gap_profile``     share of ‖Δ‖² per dimension, sorted, and its cumulative sum         reports
``space_structure`` CKA and mutual-kNN kept between dumps of the same rows               space comparisons
==================  ==================================================================  ===============

Each takes ``ax=None`` (draw into a given Axes instead of a new figure) and returns the figure, which shows inline
in Jupyter and saves with ``fig.savefig("gap.png")``.

>>> import embspace.plot                                  # doctest: +SKIP
>>> embspace.plot.curves(trajectory, ["gap", "uniformity"]).savefig("curves.png")  # doctest: +SKIP
"""

from embspace.plot._curves import curves
from embspace.plot._gap_profile import gap_profile
from embspace.plot._histograms import histograms
from embspace.plot._map import embedding_map
from embspace.plot._panels import before_after
from embspace.plot._plane import plane
from embspace.plot._reliability import reliability
from embspace.plot._spaces import space_structure
from embspace.plot._spectrum import spectrum

__all__ = ["before_after", "curves", "embedding_map", "gap_profile", "histograms", "plane", "reliability",
           "space_structure", "spectrum"]

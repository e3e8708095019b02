"""Computation shared by the layers and kept out of them: the threading policy (parallel), convolution as
matrix products (im2col) and as Winograd's minimal filtering (winograd)."""

"""Computation shared by the layers and kept out of them: worker threads over a one-thread BLAS
(parallel) and convolution as matrix products (im2col)."""

"""Python-layer modules written the pycaffe way (``import caffe``), used by the tests."""

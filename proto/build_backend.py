"""In-tree PEP 517 backend: setuptools, after generating caffe_pb2.py."""

import os
import sys

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F401,F403  (re-export the hooks we do not wrap)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import build_proto  # noqa: E402


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    build_proto.build()
    return _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    build_proto.build()
    return _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)

"""Upgrades of old Caffe formats to the current one (placeholder until the upgrade module lands)."""


def upgrade_net_as_needed(param, source=None):
    return False


def upgrade_solver_as_needed(param, source=None):
    return False

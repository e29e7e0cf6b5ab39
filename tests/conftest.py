"""Run tests inside _trial_temp/, as trial does, so that TestCase.mktemp() never writes into the checkout."""

import os
import shutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMP = os.path.join(ROOT, "_trial_temp")


def pytest_configure(config):
    shutil.rmtree(TEMP, ignore_errors=True)
    os.makedirs(TEMP)
    os.chdir(TEMP)

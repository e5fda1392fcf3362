"""Settings for the whole test session, made once here rather than at import in test files."""
import torch


def pytest_configure(config):
    # One torch thread: the tests' tensors are small (one thread is as fast), and numbers that a
    # test compares do not depend on how many cores the machine has.
    torch.set_num_threads(1)

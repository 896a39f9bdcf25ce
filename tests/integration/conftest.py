import os
import shutil


def pytest_report_header(config):
    if os.environ.get("AEON_TEST_EXECUTOR", "slurm" if shutil.which("sinfo") else "local") == "local":
        return ("SLURM tests: submitit's LOCAL executor (no sinfo on PATH or AEON_TEST_EXECUTOR=local); "
                "partition preemption and sbatch tests are skipped. CI runs them on a real SLURM.")
    return "SLURM tests: a real SLURM cluster (sinfo on PATH)"

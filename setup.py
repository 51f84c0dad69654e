"""Installs the project's packages on Apache Beam workers (Dataflow, Flink, Spark), so that
`data.prepare --engine=beam -- --setup_file=./setup.py ...` runs the same code there.

Workers need only what preparation imports: TensorFlow (the record writer), OpenCV, NumPy, absl,
tqdm and the bucket clients (google-cloud-storage, boto3: shards are uploaded by the workers), at
the versions pinned in requirements.txt (Beam itself is in the workers' image).
"""

import pathlib

import setuptools

WORKER_NEEDS = ("tensorflow-cpu", "opencv-contrib-python-headless", "numpy", "absl-py", "tqdm", "google-cloud-storage",
                "boto3")

pinned = [line.strip() for line in (pathlib.Path(__file__).parent / "requirements.txt").read_text().splitlines()
          if line.split("==")[0].strip() in WORKER_NEEDS]

setuptools.setup(
    name="video-classification-data",
    version="0.1",
    packages=["data", "flags"],
    package_data={"data": ["label_maps/*"]},
    install_requires=pinned,
)

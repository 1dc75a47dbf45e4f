"""S3 gateway phases of the cluster benchmark (run by benches/cluster.rs).

Environment: S3_ENDPOINT, S3_KEY, S3_SECRET, optional S3_CA_BUNDLE; BIG_FILE and
BIG_SHA256 (the large source file and its SHA-256); PHASE, one of:
  put-big      PutObject of BIG_FILE in one request (boto3)
  get-big      GetObject of it, streamed and hashed (checked against BIG_SHA256)
  cli-up       aws s3 cp BIG_FILE up (multipart: 8 MiB parts, 10 threads)
  cli-down     aws s3 cp back down to BIG_FILE.down, hashed, then deleted
  small-1      SMALL_N PutObjects of 4 KiB, one at a time
  small-16     the same from 16 threads
Prints one line: `seconds <float>`, timed around the S3 calls only (not Python's start).
"""

import concurrent.futures
import hashlib
import os
import subprocess
import sys
import time

# The helpers the S3 tests use.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "s3"))
from s3common import client, aws_cli  # noqa: E402

BIG = os.environ["BIG_FILE"]
PHASE = os.environ["PHASE"]
MiB = 1024 * 1024

s3 = client(max_pool_connections=32)
aws, env = aws_cli()


def sha_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(4 * MiB), b""):
            h.update(block)
    return h.hexdigest()


def small(threads):
    n = int(os.environ.get("SMALL_N", "2000"))
    seed = os.urandom(8)
    bodies = [hashlib.sha256(seed + i.to_bytes(4, "big")).digest() * 128 for i in range(n)]
    key = f"small-{threads}"

    def put(i):
        s3.put_object(Bucket="bench", Key=f"{key}/{i:05}", Body=bodies[i])

    start = time.monotonic()
    if threads == 1:
        for i in range(n):
            put(i)
    else:
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            list(pool.map(put, range(n)))
    took = time.monotonic() - start
    got = s3.get_object(Bucket="bench", Key=f"{key}/{n - 1:05}")["Body"].read()
    assert got == bodies[n - 1], "a small object reads back wrong"
    return took


start = time.monotonic()
if PHASE == "put-big":
    try:
        s3.create_bucket(Bucket="bench")
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    start = time.monotonic()
    with open(BIG, "rb") as f:
        s3.put_object(Bucket="bench", Key="big", Body=f)
    took = time.monotonic() - start
elif PHASE == "get-big":
    h = hashlib.sha256()
    body = s3.get_object(Bucket="bench", Key="big")["Body"]
    for block in iter(lambda: body.read(4 * MiB), b""):
        h.update(block)
    took = time.monotonic() - start
    assert h.hexdigest() == os.environ["BIG_SHA256"], "GetObject returned other bytes"
elif PHASE == "cli-up":
    subprocess.run(aws + ["cp", "--quiet", BIG, "s3://bench/cli-big"], env=env, check=True)
    took = time.monotonic() - start
elif PHASE == "cli-down":
    down = BIG + ".down"
    subprocess.run(aws + ["cp", "--quiet", "s3://bench/cli-big", down], env=env, check=True)
    took = time.monotonic() - start
    ok = sha_file(down) == os.environ["BIG_SHA256"]
    os.remove(down)
    assert ok, "aws s3 cp down returned other bytes"
elif PHASE == "small-1":
    took = small(1)
elif PHASE == "small-16":
    took = small(16)
else:
    sys.exit(f"unknown PHASE {PHASE!r}")
print(f"seconds {took:.6f}")

"""The S3 gateway driven by boto3 (run by tests/s3.rs against a real cluster and gateway).

Environment: S3_ENDPOINT, S3_KEY/S3_SECRET (a readwrite dfsd key), S3_RO_KEY/S3_RO_SECRET
(a readonly one), S3_CA_BUNDLE (the cluster CA, when the endpoint is HTTPS), KEEP_FILE (a
local file to leave at survivor/keep/data.bin for the Rust side to check).
Prints one line per check; any failure raises, so the exit status is non-zero.
"""

import concurrent.futures
import os
import random
import shutil
import subprocess
import time
import urllib.error
import urllib.request

from botocore.exceptions import ClientError

from s3common import EP, TLS, aws_cli, check, client, expect_error, sha

s3 = client()
ro = client(os.environ["S3_RO_KEY"], os.environ["S3_RO_SECRET"])


# Buckets.
s3.create_bucket(Bucket="alpha")
s3.create_bucket(Bucket="beta")
names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
assert "alpha" in names and "beta" in names, names
s3.head_bucket(Bucket="alpha")
expect_error("404", 404, s3.head_bucket, Bucket="no-such-bucket")
# Re-creating a bucket one owns succeeds, as in us-east-1 (issue 13).
s3.create_bucket(Bucket="alpha")
check("bucket create/list/head")

# Objects: several chunks (the gateway's chunk size is 1 MiB), byte-exact.
rng = random.Random(7)
data = rng.randbytes(5 * 1024 * 1024 + 3)
put = s3.put_object(Bucket="alpha", Key="dir/sub/big.bin", Body=data)
got = s3.get_object(Bucket="alpha", Key="dir/sub/big.bin")
body = got["Body"].read()
assert len(body) == len(data) and sha(body) == sha(data), "content differs"
assert got["ETag"] == put["ETag"], (got["ETag"], put["ETag"])
head = s3.head_object(Bucket="alpha", Key="dir/sub/big.bin")
assert head["ContentLength"] == len(data) and head["ETag"] == put["ETag"], head
check("put/get/head, sha-256 equal")

for rng_hdr, want, first, last in [
    ("bytes=100-1048676", data[100:1048677], 100, 1048676),
    ("bytes=-10", data[-10:], len(data) - 10, len(data) - 1),
    ("bytes=5000000-", data[5000000:], 5000000, len(data) - 1),
]:
    r = s3.get_object(Bucket="alpha", Key="dir/sub/big.bin", Range=rng_hdr)
    b = r["Body"].read()
    assert sha(b) == sha(want), f"{rng_hdr}: {len(b)} bytes, want {len(want)}"
    assert r["ContentRange"] == f"bytes {first}-{last}/{len(data)}", r["ContentRange"]
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 206
expect_error("InvalidRange", 416, s3.get_object, Bucket="alpha", Key="dir/sub/big.bin", Range=f"bytes={len(data) + 5}-")
check("ranged gets")

s3.put_object(Bucket="alpha", Key="empty", Body=b"")
assert s3.get_object(Bucket="alpha", Key="empty")["Body"].read() == b""
expect_error("NoSuchKey", 404, s3.get_object, Bucket="alpha", Key="missing")
expect_error("NoSuchBucket", 404, s3.get_object, Bucket="no-such-bucket", Key="x")
expect_error("NoSuchBucket", 404, s3.put_object, Bucket="no-such-bucket", Key="x", Body=b"x")
expect_error("404", 404, s3.head_object, Bucket="alpha", Key="dir")
check("empty object, missing keys and buckets")

# Conditional writes.
expect_error("PreconditionFailed", 412, s3.put_object, Bucket="alpha", Key="empty", Body=b"x", IfNoneMatch="*")
s3.put_object(Bucket="alpha", Key="fresh", Body=b"first", IfNoneMatch="*")
tag = s3.head_object(Bucket="alpha", Key="fresh")["ETag"]
expect_error("PreconditionFailed", 412, s3.put_object, Bucket="alpha", Key="fresh", Body=b"x", IfMatch='"0000"')
s3.put_object(Bucket="alpha", Key="fresh", Body=b"second", IfMatch=tag)
assert s3.get_object(Bucket="alpha", Key="fresh")["Body"].read() == b"second"
check("If-None-Match: * and If-Match on put")


def create_if_absent(i):
    try:
        s3.put_object(Bucket="alpha", Key="race", Body=f"writer {i}".encode(), IfNoneMatch="*")
        return ("won", i)
    except ClientError as e:
        return (e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"])


with concurrent.futures.ThreadPoolExecutor(20) as pool:
    outcomes = list(pool.map(create_if_absent, range(20)))
winners = [o[1] for o in outcomes if o[0] == "won"]
assert len(winners) == 1, outcomes
assert sorted(o for o in outcomes if o[0] != "won") == [("PreconditionFailed", 412)] * 19, outcomes
assert s3.get_object(Bucket="alpha", Key="race")["Body"].read() == f"writer {winners[0]}".encode()
check("20 concurrent create-if-absent puts: one winner, 19 PreconditionFailed")

odd = ["ünïcødé/ファイル", "with space/and more", "plus+amp&eq=.txt", "q?uestion#hash", "emoji 🎉"]
for k in odd:
    s3.put_object(Bucket="alpha", Key=k, Body=k.encode())
for k in odd:
    assert s3.get_object(Bucket="alpha", Key=k)["Body"].read() == k.encode(), k
listed = [o["Key"] for o in s3.list_objects_v2(Bucket="alpha")["Contents"]]
assert all(k in listed for k in odd), listed
check("keys with unicode, spaces and +&= round-trip")

tag = s3.head_object(Bucket="alpha", Key="fresh")["ETag"]
assert s3.get_object(Bucket="alpha", Key="fresh", IfMatch=tag)["Body"].read() == b"second"
expect_error("PreconditionFailed", 412, s3.get_object, Bucket="alpha", Key="fresh", IfMatch='"0000"')
expect_error("304", 304, s3.get_object, Bucket="alpha", Key="fresh", IfNoneMatch=tag)
url = s3.generate_presigned_url("get_object", Params={"Bucket": "alpha", "Key": "fresh"}, ExpiresIn=300)
assert urllib.request.urlopen(url, context=TLS).read() == b"second"
try:
    urllib.request.urlopen(url.replace("Signature=", "Signature=0"), context=TLS)
    raise AssertionError("a tampered presigned URL was accepted")
except urllib.error.HTTPError as e:
    assert e.code == 403, e.code
check("read conditions; presigned GET, tampered one refused")

# Keys that are not clean paths never reach another bucket.
for bad in ["a/../../beta/escaped", "../beta/escaped", "a//b", "a/./b", "trailing/"]:
    expect_error("InvalidArgument", 400, s3.put_object, Bucket="alpha", Key=bad, Body=b"x")
assert s3.list_objects_v2(Bucket="beta")["KeyCount"] == 0
check("keys with '..', '.', '//' refused")

expect_error("BucketNotEmpty", 409, s3.delete_bucket, Bucket="alpha")
check("non-empty bucket not deleted")

# Listings: 2,500 keys, nested and flat.
keys = [f"d{i % 3}/k{i:04d}" for i in range(2440)] + [f"top{i:03d}" for i in range(60)]
with concurrent.futures.ThreadPoolExecutor(8) as pool:
    list(pool.map(lambda k: s3.put_object(Bucket="beta", Key=k, Body=k.encode()), keys))


def all_keys_v2(**kw):
    out, prefixes, token = [], [], None
    while True:
        args = dict(kw)
        if token:
            args["ContinuationToken"] = token
        r = s3.list_objects_v2(Bucket="beta", **args)
        out += [o["Key"] for o in r.get("Contents", [])]
        prefixes += [p["Prefix"] for p in r.get("CommonPrefixes", [])]
        assert r["KeyCount"] == len(r.get("Contents", [])) + len(r.get("CommonPrefixes", []))
        if not r["IsTruncated"]:
            return out, prefixes
        token = r["NextContinuationToken"]


flat, _ = all_keys_v2(MaxKeys=337)
assert flat == sorted(keys), (len(flat), flat[:5])
r = s3.list_objects_v2(Bucket="beta", MaxKeys=1000)
assert r["KeyCount"] == 1000 and r["IsTruncated"], (r["KeyCount"], r["IsTruncated"])
assert len(all_keys_v2()[0]) == 2500
top, prefixes = all_keys_v2(Delimiter="/", MaxKeys=25)
assert prefixes == ["d0/", "d1/", "d2/"], prefixes
assert top == sorted(k for k in keys if k.startswith("top")), top[:5]
d1, _ = all_keys_v2(Prefix="d1/", MaxKeys=70)
assert d1 == sorted(k for k in keys if k.startswith("d1/")), d1[:5]
after, _ = all_keys_v2(StartAfter="d2/k0200")
assert after == sorted(k for k in keys if k > "d2/k0200"), after[:5]
top01, _ = all_keys_v2(Prefix="top01", MaxKeys=4)
assert top01 == [f"top{i:03d}" for i in range(10, 20)], top01
check("ListObjectsV2: pagination, delimiter, prefix, start-after")

v1, marker = [], ""
while True:
    r = s3.list_objects(Bucket="beta", Marker=marker, MaxKeys=455)
    page = [o["Key"] for o in r.get("Contents", [])]
    v1 += page
    if not r["IsTruncated"]:
        break
    marker = page[-1]
assert v1 == sorted(keys)
check("ListObjects v1 with markers")

assert s3.get_object(Bucket="beta", Key="d2/k0005")["Body"].read() == b"d2/k0005"
d2 = [k for k in keys if k.startswith("d2/")]
for k in d2[:10]:
    s3.delete_object(Bucket="beta", Key=k)
r = s3.delete_objects(Bucket="beta", Delete={"Objects": [{"Key": k} for k in d2[10:]] + [{"Key": "a/../x"}]})
assert sorted(d["Key"] for d in r["Deleted"]) == sorted(d2[10:]), len(r["Deleted"])
assert [(e["Key"], e["Code"]) for e in r["Errors"]] == [("a/../x", "InvalidArgument")], r["Errors"]
expect_error("404", 404, s3.head_object, Bucket="beta", Key="d2/k0005")
s3.delete_object(Bucket="beta", Key="d2/k0005")  # absent: still 204
_, prefixes = all_keys_v2(Delimiter="/")
assert prefixes == ["d0/", "d1/"], prefixes
check("DeleteObject, DeleteObjects; emptied prefixes disappear")

# Credentials.
bad = client(os.environ["S3_KEY"], os.environ["S3_SECRET"] + "x")
expect_error("SignatureDoesNotMatch", 403, bad.list_buckets)
expect_error("SignatureDoesNotMatch", 403, bad.get_object, Bucket="alpha", Key="fresh")
unknown = client("AKIDUNKNOWN", "whatever-secret")
expect_error("InvalidAccessKeyId", 403, unknown.list_buckets)
unknown = client("DKNOSUCHKEY000000000", "whatever-secret")  # shaped like a dfsd key
expect_error("InvalidAccessKeyId", 403, unknown.list_buckets)
assert ro.get_object(Bucket="alpha", Key="fresh")["Body"].read() == b"second"
expect_error("AccessDenied", 403, ro.put_object, Bucket="alpha", Key="ro", Body=b"x")
expect_error("AccessDenied", 403, ro.delete_object, Bucket="alpha", Key="fresh")
expect_error("AccessDenied", 403, ro.create_bucket, Bucket="gamma")
check("wrong secret, unknown key, readonly key")


def tamper(request, **_):
    # After signing: the body no longer matches the signed payload hash.
    request.body = b"tampered body!"
    request.headers["Content-Length"] = str(len(request.body))


# Over HTTPS botocore leaves the payload unsigned (STREAMING-UNSIGNED-PAYLOAD-TRAILER: TLS
# protects it); this client signs its SHA-256 as it does over HTTP.
tampering = client(
    os.environ["S3_KEY"],
    os.environ["S3_SECRET"],
    s3={"payload_signing_enabled": True},
    request_checksum_calculation="when_required",
)
tampering.meta.events.register("before-send.s3.PutObject", tamper)
expect_error("SignatureDoesNotMatch", 403, tampering.put_object, Bucket="alpha", Key="tampered", Body=b"the signed body")
expect_error("404", 404, s3.head_object, Bucket="alpha", Key="tampered")
# The default client over HTTPS: an unsigned payload with a trailing checksum
# (aws-chunked). A body replaced after signing is not the declared length: refused.
if EP.startswith("https"):
    unsigned = client(os.environ["S3_KEY"], os.environ["S3_SECRET"])
    unsigned.meta.events.register("before-send.s3.PutObject", tamper)
    try:
        unsigned.put_object(Bucket="alpha", Key="tampered", Body=b"the signed body")
        h = s3.head_object(Bucket="alpha", Key="tampered", ChecksumMode="ENABLED")
        raise AssertionError(f"a body replaced after signing was accepted: {h}")
    except ClientError as e:
        assert e.response["Error"]["Code"] == "IncompleteBody", e
    expect_error("404", 404, s3.head_object, Bucket="alpha", Key="tampered")
check("tampered payload refused, nothing stored")

url = s3.generate_presigned_url("get_object", Params={"Bucket": "alpha", "Key": "fresh"}, ExpiresIn=1)
issued = time.time()
while time.time() < issued + 2.5:  # until the URL's one second of validity is surely over
    time.sleep(0.1)
try:
    urllib.request.urlopen(url, context=TLS)
    raise AssertionError("an expired presigned URL was accepted")
except urllib.error.HTTPError as e:
    assert e.code == 403, e.code
check("expired presigned URL refused with 403")

# Empty a bucket, then delete it.
for o in s3.list_objects_v2(Bucket="alpha")["Contents"]:
    s3.delete_object(Bucket="alpha", Key=o["Key"])
s3.delete_bucket(Bucket="alpha")
assert "alpha" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
expect_error("NoSuchBucket", 404, s3.delete_bucket, Bucket="alpha")
check("empty bucket deleted")

# Leave one object for the Rust side to read through the dfsd CLI.
s3.create_bucket(Bucket="survivor")
with open(os.environ["KEEP_FILE"], "rb") as f:
    s3.put_object(Bucket="survivor", Key="keep/data.bin", Body=f)
check("survivor object stored")

# The AWS CLI, when installed (`.ci/run` installs it).
if shutil.which("aws"):
    aws, env = aws_cli()
    subprocess.run(aws + ["cp", os.environ["KEEP_FILE"], "s3://survivor/cli/copy.bin"], env=env, check=True, capture_output=True)
    out = subprocess.run(aws + ["cp", "s3://survivor/cli/copy.bin", "-"], env=env, check=True, capture_output=True).stdout
    with open(os.environ["KEEP_FILE"], "rb") as f:
        assert sha(out) == sha(f.read()), "awscli round trip differs"
    ls = subprocess.run(aws + ["ls", "s3://survivor/"], env=env, check=True, capture_output=True, text=True).stdout
    assert "PRE cli/" in ls and "PRE keep/" in ls, ls
    check("awscli cp up and down, ls")
else:
    print("skipped: awscli checks (no `aws` on PATH)", flush=True)
print("ALL PASSED")

"""S3 object features over the gateway: ETags, metadata, CopyObject, multipart uploads,
date conditions, and the AWS CLI's multipart `cp` and `sync` (run by tests/s3.rs).

Environment: as boto_suite.py (S3_ENDPOINT, S3_KEY, S3_SECRET, optional S3_CA_BUNDLE),
plus WORK_DIR (a scratch directory). Prints one line per check; any failure raises.
Leaves bucket "gamma" with objects "orig" and "copy" (same chunks) and "mp/big" for the
Rust side to inspect.
"""

import base64
import datetime
import filecmp
import hashlib
import http.client
import os
import random
import re
import shutil
import subprocess
import urllib.parse
import zlib

from s3common import EP, TLS, aws_cli, check, client, expect_error, sha

WORK = os.environ["WORK_DIR"]
MiB = 1024 * 1024

s3 = client()


def md5(b):
    return hashlib.md5(b).hexdigest()


rng = random.Random(11)
s3.create_bucket(Bucket="gamma")

# ETag = MD5, Content-Type and user metadata kept.
data = rng.randbytes(3 * MiB + 5)
put = s3.put_object(Bucket="gamma", Key="orig", Body=data, ContentType="image/png", Metadata={"Colour": "blue", "n": "42"})
assert put["ETag"] == f'"{md5(data)}"', (put["ETag"], md5(data))
head = s3.head_object(Bucket="gamma", Key="orig")
assert head["ETag"] == put["ETag"] and head["ContentType"] == "image/png", head
assert head["Metadata"] == {"colour": "blue", "n": "42"}, head["Metadata"]
got = s3.get_object(Bucket="gamma", Key="orig")
assert got["ContentType"] == "image/png" and got["Metadata"] == {"colour": "blue", "n": "42"}
assert sha(got["Body"].read()) == sha(data)
listed = s3.list_objects_v2(Bucket="gamma")["Contents"]
assert [(o["Key"], o["ETag"]) for o in listed] == [("orig", put["ETag"])], listed
plain = s3.put_object(Bucket="gamma", Key="plain", Body=b"x")
assert s3.head_object(Bucket="gamma", Key="plain")["ContentType"] == "binary/octet-stream"
assert plain["ETag"] == f'"{md5(b"x")}"'
check("ETag is the MD5; Content-Type and x-amz-meta-* kept")

expect_error("BadDigest", 400, s3.put_object, Bucket="gamma", Key="digest", Body=b"abc", ContentMD5="AAAAAAAAAAAAAAAAAAAAAA==")
expect_error("404", 404, s3.head_object, Bucket="gamma", Key="digest")
# x-amz-checksum-* (header or aws-chunked trailer; boto3 sends a CRC32 trailer with every
# PUT by default over HTTPS) is verified before the commit.
crc = base64.b64encode(zlib.crc32(b"abc").to_bytes(4, "big")).decode()
s3.put_object(Bucket="gamma", Key="crc", Body=b"abc", ChecksumCRC32=crc)
sha_b64 = base64.b64encode(hashlib.sha256(b"abc").digest()).decode()
s3.put_object(Bucket="gamma", Key="crc", Body=b"abc", ChecksumSHA256=sha_b64)
expect_error("BadDigest", 400, s3.put_object, Bucket="gamma", Key="crc2", Body=b"abc", ChecksumCRC32="AAAAAA==")
expect_error("BadDigest", 400, s3.put_object, Bucket="gamma", Key="crc2", Body=b"abc", ChecksumSHA256=base64.b64encode(b"x" * 32).decode())
expect_error("404", 404, s3.head_object, Bucket="gamma", Key="crc2")
s3.delete_object(Bucket="gamma", Key="crc")


def wrong_trailer(request, **_):
    # The default client sends the CRC32 as an aws-chunked trailer: corrupt its value.
    if hasattr(request.body, "seek"):
        request.body.seek(0)
    body = request.body.read() if hasattr(request.body, "read") else request.body
    assert b"x-amz-checksum-crc32:" in body, body[-200:]
    request.body = re.sub(rb"x-amz-checksum-crc32:[A-Za-z0-9+/=]{8}", b"x-amz-checksum-crc32:AAAAAA==", body)


if EP.startswith("https"):
    corrupting = client()
    corrupting.meta.events.register("before-send.s3.PutObject", wrong_trailer)
    expect_error("BadDigest", 400, corrupting.put_object, Bucket="gamma", Key="crc3", Body=b"trailer checked")
    expect_error("404", 404, s3.head_object, Bucket="gamma", Key="crc3")
expect_error("MetadataTooLarge", 400, s3.put_object, Bucket="gamma", Key="meta", Body=b"x", Metadata={"big": "v" * 2100})
check("wrong Content-MD5, x-amz-checksum-crc32/sha256 and oversized metadata refused, nothing stored")

# A PUT declaring more than 5 GiB is refused before its body is read.
url = s3.generate_presigned_url("put_object", Params={"Bucket": "gamma", "Key": "huge"}, ExpiresIn=300)
parts = urllib.parse.urlsplit(url)
Conn = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
kw = {"context": TLS} if parts.scheme == "https" else {}
conn = Conn(parts.hostname, parts.port, timeout=30, **kw)
conn.putrequest("PUT", parts.path + "?" + parts.query, skip_accept_encoding=True)
conn.putheader("Content-Length", str(6 * 1024 ** 3))
conn.putheader("Expect", "100-continue")
conn.endheaders()
resp = conn.getresponse()
body = resp.read().decode()
assert resp.status == 400 and "<Code>EntityTooLarge</Code>" in body, (resp.status, body)
conn.close()
expect_error("404", 404, s3.head_object, Bucket="gamma", Key="huge")
check("a PUT over 5 GiB refused with EntityTooLarge before its body is sent")

# If-Match with a stale ETag.
v1 = s3.put_object(Bucket="gamma", Key="cas", Body=b"one")["ETag"]
v2 = s3.put_object(Bucket="gamma", Key="cas", Body=b"two", IfMatch=v1)["ETag"]
expect_error("PreconditionFailed", 412, s3.put_object, Bucket="gamma", Key="cas", Body=b"three", IfMatch=v1)
assert s3.get_object(Bucket="gamma", Key="cas")["Body"].read() == b"two"
# A rewrite with the same bytes has the same MD5, and If-Match accepts it.
s3.put_object(Bucket="gamma", Key="cas", Body=b"two", IfMatch=v2)
check("If-Match with a stale ETag refused")

# Date conditions.
now = datetime.datetime.now(datetime.timezone.utc)
hour = datetime.timedelta(hours=1)
expect_error("304", 304, s3.get_object, Bucket="gamma", Key="orig", IfModifiedSince=now + hour)
assert s3.get_object(Bucket="gamma", Key="orig", IfModifiedSince=now - hour)["ContentLength"] == len(data)
expect_error("PreconditionFailed", 412, s3.get_object, Bucket="gamma", Key="orig", IfUnmodifiedSince=now - hour)
assert s3.head_object(Bucket="gamma", Key="orig", IfUnmodifiedSince=now + hour)["ContentLength"] == len(data)
# If-None-Match wins over If-Modified-Since (RFC 9110).
s3.get_object(Bucket="gamma", Key="orig", IfNoneMatch='"other"', IfModifiedSince=now + hour)
check("If-Modified-Since / If-Unmodified-Since")

# CopyObject: metadata copied or replaced, conditions on the source.
c = s3.copy_object(Bucket="gamma", Key="copy", CopySource={"Bucket": "gamma", "Key": "orig"})
assert c["CopyObjectResult"]["ETag"] == put["ETag"], c
h = s3.head_object(Bucket="gamma", Key="copy")
assert h["ContentType"] == "image/png" and h["Metadata"] == {"colour": "blue", "n": "42"}, h
assert sha(s3.get_object(Bucket="gamma", Key="copy")["Body"].read()) == sha(data)
s3.copy_object(Bucket="gamma", Key="dir/replaced", CopySource="gamma/orig", MetadataDirective="REPLACE", ContentType="text/plain", Metadata={"k": "v"})
h = s3.head_object(Bucket="gamma", Key="dir/replaced")
assert h["ContentType"] == "text/plain" and h["Metadata"] == {"k": "v"} and h["ETag"] == put["ETag"], h
expect_error("InvalidRequest", 400, s3.copy_object, Bucket="gamma", Key="orig", CopySource="gamma/orig")
s3.copy_object(Bucket="gamma", Key="orig", CopySource="gamma/orig", MetadataDirective="REPLACE", ContentType="image/png", Metadata={"Colour": "blue", "n": "42"})
expect_error("PreconditionFailed", 412, s3.copy_object, Bucket="gamma", Key="c2", CopySource="gamma/orig", CopySourceIfMatch='"stale"')
expect_error("PreconditionFailed", 412, s3.copy_object, Bucket="gamma", Key="c2", CopySource="gamma/orig", CopySourceIfNoneMatch=put["ETag"])
expect_error("NoSuchKey", 404, s3.copy_object, Bucket="gamma", Key="c2", CopySource="gamma/missing")
expect_error("404", 404, s3.head_object, Bucket="gamma", Key="c2")
check("CopyObject: COPY and REPLACE metadata, self-copy rules, source conditions")

# Multipart: three parts, listed, completed into one object with the multipart ETag.
parts_data = [rng.randbytes(5 * MiB), rng.randbytes(5 * MiB + 1), rng.randbytes(777)]
up = s3.create_multipart_upload(Bucket="gamma", Key="mp/big", ContentType="application/x-test", Metadata={"m": "1"})
uid = up["UploadId"]
tags = []
for i, p in enumerate(parts_data, 1):
    r = s3.upload_part(Bucket="gamma", Key="mp/big", UploadId=uid, PartNumber=i, Body=p)
    assert r["ETag"] == f'"{md5(p)}"', r["ETag"]
    tags.append(r["ETag"])
lp = s3.list_parts(Bucket="gamma", Key="mp/big", UploadId=uid)
assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in lp["Parts"]] == [(i + 1, tags[i], len(parts_data[i])) for i in range(3)], lp["Parts"]
lp1 = s3.list_parts(Bucket="gamma", Key="mp/big", UploadId=uid, MaxParts=2)
assert lp1["IsTruncated"] and lp1["NextPartNumberMarker"] == 2, lp1
uploads = s3.list_multipart_uploads(Bucket="gamma")["Uploads"]
assert [(u["Key"], u["UploadId"]) for u in uploads] == [("mp/big", uid)], uploads
# Uploads in progress are not objects.
keys = [o["Key"] for o in s3.list_objects_v2(Bucket="gamma")["Contents"]]
assert not any(k.startswith(".dfsd") for k in keys), keys
expect_error("InvalidArgument", 400, s3.put_object, Bucket="gamma", Key=".dfsd-uploads/x", Body=b"x")
# Completion refusals leave the upload intact.
expect_error("InvalidPart", 400, s3.complete_multipart_upload, Bucket="gamma", Key="mp/big", UploadId=uid,
             MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"0000"'}]})
expect_error("InvalidPartOrder", 400, s3.complete_multipart_upload, Bucket="gamma", Key="mp/big", UploadId=uid,
             MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": tags[1]}, {"PartNumber": 1, "ETag": tags[0]}]})
expect_error("EntityTooSmall", 400, s3.complete_multipart_upload, Bucket="gamma", Key="mp/big", UploadId=uid,
             MultipartUpload={"Parts": [{"PartNumber": 3, "ETag": tags[2]}, {"PartNumber": 4, "ETag": tags[2]}]})
expect_error("NoSuchUpload", 404, s3.upload_part, Bucket="gamma", Key="mp/other", UploadId=uid, PartNumber=1, Body=b"x")
done = s3.complete_multipart_upload(Bucket="gamma", Key="mp/big", UploadId=uid,
                                    MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": t} for i, t in enumerate(tags)]})
want_tag = '"%s-3"' % md5(b"".join(hashlib.md5(p).digest() for p in parts_data))
assert done["ETag"] == want_tag, (done["ETag"], want_tag)
whole = b"".join(parts_data)
g = s3.get_object(Bucket="gamma", Key="mp/big")
assert sha(g["Body"].read()) == sha(whole) and g["ETag"] == want_tag
assert g["ContentType"] == "application/x-test" and g["Metadata"] == {"m": "1"}, g
r = s3.get_object(Bucket="gamma", Key="mp/big", Range=f"bytes={5 * MiB - 3}-{5 * MiB + 2}")
assert r["Body"].read() == whole[5 * MiB - 3:5 * MiB + 3]
assert s3.list_multipart_uploads(Bucket="gamma").get("Uploads", []) == []
expect_error("NoSuchUpload", 404, s3.list_parts, Bucket="gamma", Key="mp/big", UploadId=uid)
check("multipart: parts listed, completed by joining chunks, multipart ETag, metadata kept")

# Conditional completion, abort, UploadPartCopy.
up2 = s3.create_multipart_upload(Bucket="gamma", Key="mp/big")["UploadId"]
t = s3.upload_part(Bucket="gamma", Key="mp/big", UploadId=up2, PartNumber=1, Body=b"small")["ETag"]
expect_error("PreconditionFailed", 412, s3.complete_multipart_upload, Bucket="gamma", Key="mp/big", UploadId=up2,
             IfNoneMatch="*", MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": t}]})
expect_error("PreconditionFailed", 412, s3.complete_multipart_upload, Bucket="gamma", Key="mp/big", UploadId=up2,
             IfMatch='"stale-1"', MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": t}]})
s3.abort_multipart_upload(Bucket="gamma", Key="mp/big", UploadId=up2)
expect_error("NoSuchUpload", 404, s3.upload_part, Bucket="gamma", Key="mp/big", UploadId=up2, PartNumber=2, Body=b"x")
assert s3.head_object(Bucket="gamma", Key="mp/big")["ETag"] == want_tag

up3 = s3.create_multipart_upload(Bucket="gamma", Key="mp/copied")["UploadId"]
c1 = s3.upload_part_copy(Bucket="gamma", Key="mp/copied", UploadId=up3, PartNumber=1, CopySource="gamma/mp/big")
c2 = s3.upload_part_copy(Bucket="gamma", Key="mp/copied", UploadId=up3, PartNumber=2, CopySource="gamma/orig", CopySourceRange="bytes=10-1048585")
assert c2["CopyPartResult"]["ETag"] == f'"{md5(data[10:1048586])}"', c2
s3.complete_multipart_upload(Bucket="gamma", Key="mp/copied", UploadId=up3, IfNoneMatch="*", MultipartUpload={"Parts": [
    {"PartNumber": 1, "ETag": c1["CopyPartResult"]["ETag"]}, {"PartNumber": 2, "ETag": c2["CopyPartResult"]["ETag"]}]})
assert sha(s3.get_object(Bucket="gamma", Key="mp/copied")["Body"].read()) == sha(whole + data[10:1048586])
check("conditional completion, abort, UploadPartCopy (whole and ranged)")

# ListMultipartUploads in pages: by key, then upload id; prefix filters.
ids = sorted(s3.create_multipart_upload(Bucket="gamma", Key=k)["UploadId"] for k in ["pg/a", "pg/b", "pg/b", "other"])
seen, kw = [], {"Prefix": "pg/", "MaxUploads": 2}
while True:
    r = s3.list_multipart_uploads(Bucket="gamma", **kw)
    seen += [(u["Key"], u["UploadId"]) for u in r.get("Uploads", [])]
    if not r["IsTruncated"]:
        break
    kw.update(KeyMarker=r["NextKeyMarker"], UploadIdMarker=r["NextUploadIdMarker"])
assert [k for k, _ in seen] == ["pg/a", "pg/b", "pg/b"], seen
assert seen[1][1] < seen[2][1] and len(set(i for _, i in seen)) == 3, seen
everything = s3.list_multipart_uploads(Bucket="gamma")["Uploads"]
assert sorted(u["UploadId"] for u in everything) == ids, everything
for u in everything:
    s3.abort_multipart_upload(Bucket="gamma", Key=u["Key"], UploadId=u["UploadId"])
check("ListMultipartUploads: pages by key and upload id, prefix")

# A bucket holding only an upload in progress can be deleted.
s3.create_bucket(Bucket="delta")
s3.create_multipart_upload(Bucket="delta", Key="pending")
s3.delete_bucket(Bucket="delta")
expect_error("404", 404, s3.head_bucket, Bucket="delta")
check("a bucket with only an upload in progress is deleted")

# Clock skew: a request signed 16 minutes off the gateway's clock is refused; 14 is fine.
import botocore.auth  # noqa: E402

real_now = botocore.auth.get_current_datetime
for minutes, ok in [(16, False), (-16, False), (14, True), (-14, True)]:
    botocore.auth.get_current_datetime = lambda m=minutes: real_now() + datetime.timedelta(minutes=m)
    try:
        if ok:
            s3.head_object(Bucket="gamma", Key="plain")
        else:
            expect_error("RequestTimeTooSkewed", 403, s3.list_objects_v2, Bucket="gamma")
    finally:
        botocore.auth.get_current_datetime = real_now
check("requests signed more than 15 minutes off the gateway's clock refused")

# A key confined to /gamma/team: the coordinator applies its prefix to S3 calls.
if os.environ.get("S3_TEAM_KEY"):
    team = client(os.environ["S3_TEAM_KEY"], os.environ["S3_TEAM_SECRET"])
    team.put_object(Bucket="gamma", Key="team/notes.txt", Body=b"ours")
    assert team.get_object(Bucket="gamma", Key="team/notes.txt")["Body"].read() == b"ours"
    assert [o["Key"] for o in team.list_objects_v2(Bucket="gamma", Prefix="team/")["Contents"]] == ["team/notes.txt"]
    expect_error("AccessDenied", 403, team.get_object, Bucket="gamma", Key="orig")
    expect_error("AccessDenied", 403, team.put_object, Bucket="gamma", Key="outside", Body=b"x")
    expect_error("AccessDenied", 403, team.delete_object, Bucket="gamma", Key="orig")
    expect_error("AccessDenied", 403, team.copy_object, Bucket="gamma", Key="team/stolen", CopySource="gamma/orig")
    expect_error("AccessDenied", 403, team.create_bucket, Bucket="team-bucket")
    assert [b["Name"] for b in team.list_buckets()["Buckets"]] == ["gamma"]
    assert s3.head_object(Bucket="gamma", Key="orig")["ETag"] == put["ETag"]
    expect_error("404", 404, s3.head_object, Bucket="gamma", Key="outside")
    s3.delete_object(Bucket="gamma", Key="team/notes.txt")
    check("a key confined to a prefix reads and writes only below it")

# The AWS CLI: a 200 MiB multipart cp both ways, and sync of a tree both ways.
if shutil.which("aws"):
    aws, env = aws_cli()

    def run(*args):
        return subprocess.run(aws + list(args), env=env, check=True, capture_output=True, text=True).stdout

    big = os.path.join(WORK, "big.bin")
    h = hashlib.sha256()
    with open(big, "wb") as f:
        for _ in range(200):
            block = rng.randbytes(MiB)
            h.update(block)
            f.write(block)
    run("cp", big, "s3://gamma/cli/big.bin")
    tag = s3.head_object(Bucket="gamma", Key="cli/big.bin")["ETag"]
    assert tag.endswith('-25"'), tag  # the CLI's 8 MiB parts
    back = os.path.join(WORK, "big.back")
    run("cp", "s3://gamma/cli/big.bin", back)
    h2 = hashlib.sha256()
    with open(back, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            h2.update(block)
    assert h2.hexdigest() == h.hexdigest(), "200 MiB round trip differs"
    os.remove(big)
    os.remove(back)
    check("aws s3 cp of 200 MiB (multipart) up and down, SHA-256 equal")

    tree = os.path.join(WORK, "tree")
    for i in range(300):
        d = os.path.join(tree, f"d{i % 7}", f"e{i % 3}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i:03d} name.txt"), "wb") as f:
            f.write(rng.randbytes(rng.randrange(0, 20000)))
    with open(os.path.join(tree, "large.bin"), "wb") as f:
        f.write(rng.randbytes(9 * MiB))
    run("sync", tree, "s3://gamma/tree")
    n = sum(1 for p in s3.get_paginator("list_objects_v2").paginate(Bucket="gamma", Prefix="tree/") for _ in p.get("Contents", []))
    assert n == 301, n
    assert run("sync", tree, "s3://gamma/tree").strip() == "", "a second sync uploaded again"
    down = os.path.join(WORK, "down")
    run("sync", "s3://gamma/tree", down)
    diff = subprocess.run(["diff", "-r", tree, down], capture_output=True, text=True)
    assert diff.returncode == 0, diff.stdout[:2000]
    cmp = filecmp.dircmp(tree, down)
    assert not cmp.left_only and not cmp.right_only
    check("aws s3 sync of 301 files up and down, diff -r equal")
else:
    print("skipped: awscli checks (no `aws` on PATH)", flush=True)
print("ALL PASSED")

//! The S3 operations as s3s calls them: each handler checks what the caller's key may do,
//! takes the SDK client acting for the caller, calls the one function of its module that
//! does the work, and wraps the answer. Nothing else lives here.
//!
//! s3s has already checked the SigV4 signature (and decoded aws-chunked bodies) when a
//! handler runs. Where the work is: [`state`](super::state) (the caller, bucket and object
//! lookups), [`objects`](super::objects), [`copy`](super::copy),
//! [`delete`](super::delete), [`listing`](super::listing), [`buckets`](super::buckets),
//! [`acl`](super::acl), [`multipart`](super::multipart),
//! [`upload_part`](super::upload_part), [`complete`](super::complete); bodies in
//! [`body`](super::body), conditions in [`conditions`](super::conditions).

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, S3};

use super::state::{anonymous_bucket, caller, client_for, require_read, require_write, DfsS3};

#[async_trait::async_trait]
impl S3 for DfsS3 {
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        require_read(&self.keys, &req)?;
        let c = client_for(self, &req);
        let out = self.list_buckets_impl(&c, req.input).await?;
        Ok(S3Response::new(out))
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        require_write(&self.keys, &req)?;
        let c = client_for(self, &req);
        let out = self
            .create_bucket_impl(&c, &caller(&req), req.input)
            .await?;
        Ok(S3Response::new(out))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        require_read(&self.keys, &req)?;
        let c = client_for(self, &req);
        let out = self.location(&c, &req.input.bucket).await?;
        Ok(S3Response::new(out))
    }

    async fn get_bucket_acl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        require_read(&self.keys, &req)?;
        let c = client_for(self, &req);
        let out = self.get_acl(&c, &req.input.bucket).await?;
        Ok(S3Response::new(out))
    }

    async fn put_bucket_acl(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<S3Response<PutBucketAclOutput>> {
        require_write(&self.keys, &req)?;
        let c = client_for(self, &req);
        self.put_bucket_acl_impl(&c, req.input).await?;
        Ok(S3Response::new(PutBucketAclOutput::default()))
    }

    async fn get_object_acl(
        &self,
        req: S3Request<GetObjectAclInput>,
    ) -> S3Result<S3Response<GetObjectAclOutput>> {
        require_read(&self.keys, &req)?;
        let c = client_for(self, &req);
        let out = self
            .object_acl(&c, &req.input.bucket, &req.input.key)
            .await?;
        Ok(S3Response::new(out))
    }

    async fn put_object_acl(
        &self,
        req: S3Request<PutObjectAclInput>,
    ) -> S3Result<S3Response<PutObjectAclOutput>> {
        require_write(&self.keys, &req)?;
        let c = client_for(self, &req);
        self.put_object_acl_impl(&c, req.input).await?;
        Ok(S3Response::new(PutObjectAclOutput::default()))
    }

    async fn put_bucket_cors(
        &self,
        req: S3Request<PutBucketCorsInput>,
    ) -> S3Result<S3Response<PutBucketCorsOutput>> {
        require_write(&self.keys, &req)?;
        let c = client_for(self, &req);
        self.put_cors(&c, req.input).await?;
        Ok(S3Response::new(PutBucketCorsOutput::default()))
    }

    async fn get_bucket_cors(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        require_read(&self.keys, &req)?;
        let c = client_for(self, &req);
        let out = self.get_cors(&c, &req.input.bucket).await?;
        Ok(S3Response::new(out))
    }

    async fn delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        require_write(&self.keys, &req)?;
        let c = client_for(self, &req);
        self.bucket(&c, &req.input.bucket).await?;
        self.set_cors(&c, &req.input.bucket, String::new()).await?;
        Ok(S3Response::new(DeleteBucketCorsOutput::default()))
    }

    async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        require_read(&self.keys, &req)?;
        let c = client_for(self, &req);
        let out = super::objects::attributes(self, c, req.input).await?;
        Ok(S3Response::new(out))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        require_read(&self.keys, &req)?;
        let c = client_for(self, &req);
        self.bucket(&c, &req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        require_write(&self.keys, &req)?;
        let c = client_for(self, &req);
        self.delete_bucket_impl(&c, &req.input.bucket).await?;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let c = client_for(self, &req);
        let out = super::objects::put(self, &c, req).await?;
        Ok(S3Response::new(out))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        require_read(&self.keys, &req)?;
        let c = client_for(self, &req);
        let out = super::objects::get(self, c, req).await?;
        Ok(S3Response::new(out))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        require_read(&self.keys, &req)?;
        let c = client_for(self, &req);
        let out = super::objects::head(self, c, req.input).await?;
        Ok(S3Response::new(out))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        require_write(&self.keys, &req)?;
        let c = client_for(self, &req);
        let out = self.copy(&c, req.input).await?;
        Ok(S3Response::new(out))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        require_write(&self.keys, &req)?;
        let c = client_for(self, &req);
        self.delete_one(&c, req.input).await?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        require_write(&self.keys, &req)?;
        let c = client_for(self, &req);
        let out = self.delete_many(&c, req.input).await?;
        Ok(S3Response::new(out))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        require_read(&self.keys, &req)?;
        let c = client_for(self, &req);
        let signed = anonymous_bucket(&req).is_none();
        let out = super::listing::list_v2(self, &c, req.input, signed).await?;
        Ok(S3Response::new(out))
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        require_read(&self.keys, &req)?;
        let c = client_for(self, &req);
        let signed = anonymous_bucket(&req).is_none();
        let out = super::listing::list_v1(self, &c, req.input, signed).await?;
        Ok(S3Response::new(out))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        require_write(&self.keys, &req)?;
        let c = client_for(self, &req);
        let out = self.create_upload(&c, req.input).await?;
        Ok(S3Response::new(out))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let c = client_for(self, &req);
        let allowed = require_write(&self.keys, &req);
        let out = self.upload_part_body(&c, allowed, req).await?;
        Ok(S3Response::new(out))
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        require_write(&self.keys, &req)?;
        let c = client_for(self, &req);
        let out = self.upload_part_from_copy(&c, req.input).await?;
        Ok(S3Response::new(out))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        require_write(&self.keys, &req)?;
        let c = client_for(self, &req);
        let out = self.complete_upload(&c, req.input).await?;
        Ok(S3Response::new(out))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        require_write(&self.keys, &req)?;
        let c = client_for(self, &req);
        self.abort_upload(&c, req.input).await?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        require_read(&self.keys, &req)?;
        let c = client_for(self, &req);
        let out = self.parts(&c, req.input).await?;
        Ok(S3Response::new(out))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        require_read(&self.keys, &req)?;
        let c = client_for(self, &req);
        let out = self.uploads(&c, req.input).await?;
        Ok(S3Response::new(out))
    }
}

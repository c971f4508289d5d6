"""Stand-in for Alibaba Cloud OSS: buckets, objects, multipart, CRC-64 headers, V1/V4 signatures."""

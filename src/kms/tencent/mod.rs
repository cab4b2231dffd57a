//! The Tencent Cloud KMS back-end: request signing, and a client for API 3.0 and the legacy 2.0.

pub mod sign;

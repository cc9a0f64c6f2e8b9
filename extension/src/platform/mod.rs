//! What talks to Lambda's own APIs, apart from the Runtime API the proxy carries: the Extensions
//! API ([`extensions_api`]: register, events, init errors), the Lambda control plane's limit
//! ([`limit_reader`]: reserved concurrency, the account's pool) and the AWS configuration both
//! the limit reader and the coordinator's IAM tokens load ([`aws`]).

pub mod aws;
pub mod cpu;
pub mod extensions_api;
pub mod limit_reader;

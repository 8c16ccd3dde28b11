//! etcd's v3 API as a tonic client, generated from the vendored protos
//! (`proto/third_party/etcd`, etcd v3.4.23) without a system `protoc`, for an etcd store
//! backend. `test_cluster` (feature `test-cluster`) starts an etcd cluster on loopback for
//! tests.

#![forbid(unsafe_code)]

/// `mvccpb`: keys, values and watch events.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// `authpb`: users, roles and permissions.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod authpb {
    tonic::include_proto!("authpb");
}

/// `etcdserverpb`: the KV, Watch, Lease, Cluster, Maintenance and Auth services.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

#[cfg(any(test, feature = "test-cluster"))]
pub mod test_cluster;

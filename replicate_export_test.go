package mpauthx

// ErrNotReplicated and ReplicaAckTimeout are errNotReplicated and
// replicaAckTimeout, for the tests of package mpauthx_test.
var ErrNotReplicated = errNotReplicated

const ReplicaAckTimeout = replicaAckTimeout

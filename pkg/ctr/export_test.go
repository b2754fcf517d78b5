package ctr

// CreateLeaseID lets tests make, by hand, the lease a create left behind.
var CreateLeaseID = createLeaseID

// Package buildinfo says what the running binary was built from: the
// module version, the VCS revision and the Go version, as `manager
// version` prints them and wafleet_build_info exports them.
package buildinfo

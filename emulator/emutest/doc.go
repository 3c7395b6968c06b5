// Package emutest starts an emulator for a test and waits on its stats, so
// that the tests of the packages that run against one share these helpers
// instead of copying them. Only tests import it.
package emutest

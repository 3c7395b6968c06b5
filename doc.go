// Package wafleet is the root of the wafleet module: a service that keeps a
// fleet of WhatsApp Web (multi-device) accounts connected. The code lives in
// the sub-packages; see README.md for how they fit together.
package wafleet

// Package testenv starts the real services end-to-end tests run against, each on 127.0.0.1
// with free ports, stopped when the test ends.
package testenv

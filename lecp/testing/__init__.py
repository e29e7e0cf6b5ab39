"""Test and sandbox helpers shipped with lecp: the Pebble launcher, a webroot server, fakes."""

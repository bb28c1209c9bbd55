// Stand-ins for the tools upstream's agnhost image takes from Alpine (curl,
// nc): standard library only, built statically by tests/conformance/images.sh.
module picolet.test/conformance/tools

go 1.24

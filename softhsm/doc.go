// Package softhsm provisions SoftHSM2 for development and tests: it finds the SoftHSM2
// PKCS#11 module, writes a private SoftHSM2 configuration and token directory, and
// initialises a token from Go (C_InitToken, C_InitPIN), so that neither a developer nor CI
// has to run softhsm2-util or touch /etc/softhsm.
//
// Production appliances use whatever PKCS#11 HSM the site owns; nothing outside
// development and tests should provision with this package. The one production use is
// CheckSystemTokenDir (system.go): where SoftHSM2 itself is the site's HSM, hufud checks
// its configuration and token directory before loading the module.
//
// # One configuration per process
//
// SoftHSM2 reads SOFTHSM2_CONF once, in C_Initialize, and a PKCS#11 module is initialised at
// most once per process at a time. Provision therefore sets SOFTHSM2_CONF before it
// initialises the module, and refuses a second directory in the same process while the
// module is initialised (ErrConfigInUse). If the module is already initialised (for example
// because an hsm.Keyring is open), Provision borrows that initialisation and leaves it
// alone; otherwise it initialises the module itself and finalises it before returning, so
// that crypto11 (which refuses a module someone else initialised) can open it afterwards.
// The softhsmtest package builds on this to give every test a ready token.
//
// # Files
//
// Under the directory given to Provision:
//
//	softhsm2.conf      the SoftHSM2 configuration (SOFTHSM2_CONF points here)
//	tokens/            SoftHSM2's token directory
//	<label>.pin        the token's user PIN (mode 0600), generated on first use
//	<label>.so-pin     the token's security-officer PIN (mode 0600)
package softhsm

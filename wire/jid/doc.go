// Package jid holds the WhatsApp JID (Jabber ID) type: user, server, device,
// agent (AD_JID domain type) and integrator, with the string forms used in
// logs and configuration (user.agent:device@server). The node codec
// (wire/node) encodes JIDs in their binary forms; the connection, pairing,
// store and emulator packages import this package to name accounts and
// devices.
package jid

// Package payload builds the ClientPayload protobuf that a WhatsApp Web
// companion sends, encrypted, in the third message of the Noise handshake
// (PROTOCOL.md section 5).
//
// Two payloads exist. [Registration] is sent by a device that is not yet
// paired: it carries the device's long-term public keys, the build hash and
// the serialized DeviceProps that the phone shows in its list of linked
// devices. [Login] is sent by a paired device: it names the device by phone
// number and device ID; the server authenticates it by the Noise static key.
//
// The field values are those whatsmeow sets. Two behaviours are modelled by
// [Profile]: [ProfileCurrent] (the default) follows whatsmeow HEAD — the login
// payload carries lc=1 and DeviceProps uses HEAD's history-sync capabilities —
// and [ProfilePinned] follows the whatsmeow version that produced the test
// vectors and reproduces them byte for byte. The WhatsApp version number is a
// separate, configurable [Version] (default [DefaultVersion]); a version the
// server no longer accepts is refused with failure 405.
//
// The handshake code (the connection actor's dialer), config (the platform
// names), webversion, app and the emulator import this package; nothing here touches the network.
package payload

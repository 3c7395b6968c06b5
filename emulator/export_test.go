package emulator

// AckFor gives the external tests the ack whatsmeow's sendAck builds, as
// the internal tests write it (correctAck), so that both sides check the
// server against one expectation.
var AckFor = correctAck

// Package e2e holds the stanzas of the end-to-end send path as the client
// builds and reads them: the usync device-list query and its answer, the
// prekey-bundle fetch and its answer, the group info query and its
// participants, the fan-out <message> with one <enc> per recipient device,
// the group <message> with its skmsg and the answer to a member's retry
// receipt, and the participant-list hash (phash) the server compares. It
// knows node shapes only; the Signal state and the decision of what to
// send are the connection actor's.
//
// Shapes, from the public implementations' facts (whatsmeow user.go,
// prekeys.go, send.go, group.go and retry.go; Baileys messages-send.ts):
//
//	<iq xmlns=usync type=get to=s.whatsapp.net id><usync sid mode=query last=true index=0 context=message>
//	  <query><devices version=2/></query><list><user jid=USER/>…</list></usync></iq>
//	→ <iq type=result><usync><list><user jid=USER><devices><device-list>
//	  <device id=0/><device id=N key-index=K/>…</device-list></devices></user>…</list></usync></iq>
//
//	<iq xmlns=encrypt type=get to=s.whatsapp.net id><key><user jid=DEVICE reason=identity/>…</key></iq>
//	→ <iq type=result><list><user jid=DEVICE><registration>4</registration><type>05</type>
//	  <identity>32</identity>[<key><id>3</id><value>32</value></key>]
//	  <skey><id>3</id><value>32</value><signature>64</signature></skey></user>…</list></iq>
//	  (a device the server has no bundle for: <user jid><error code text/></user>)
//
//	<message id to=USER type=text [phash]><participants><to jid=DEVICE><enc v=2 type=pkmsg|msg>…</enc></to>…</participants>
//	  [<device-identity>ADVSignedDeviceIdentity</device-identity>]</message>
//	→ <ack class=message id from=USER t [phash] [error]/>
//
//	<iq xmlns=w:g2 type=get to=GROUP id><query request=interactive/></iq>
//	→ <iq type=result><group id subject … [addressing_mode]><participant jid=USER [type]/>…</group></iq>
//
//	<message id to=GROUP type=text phash>[<participants>…</participants>][<device-identity/>]<enc v=2 type=skmsg/></message>
//	<message id to=GROUP participant=DEVICE type=text t><enc v=2 type=pkmsg|msg count=N/>[<device-identity/>]</message>
//	  (the answer to a member device's retry receipt)
//
// whatsmeow puts phash only on group messages and compares the ack's;
// Baileys puts it on 1:1 messages too. Neither documents what the server
// does with a 1:1 phash that misses a device: we send it (as Baileys) and
// read a different phash in the ack as "the server's device list differs".
//
// It is in the core layer and imports wire/node, wire/jid and signal.
package e2e

package emulator

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/wafleet/wafleet/waproto"
	"github.com/wafleet/wafleet/wire/payload"
)

// Versions is the server's client-version policy (Options.MinVersion and
// LatestVersion, GET/POST /version). Versions are "primary.secondary.tertiary"
// such as "2.3000.1045649367".
type Versions struct {
	// Min is the oldest appVersion accepted; a registration or login below
	// it gets <failure reason="405"/>. "" accepts every version.
	Min string `json:"min"`
	// Latest is the version GET /sw.js advertises (its tertiary part as
	// "client_revision"). "" means Min, or the built-in version
	// (payload.DefaultVersion) when Min is "" too.
	Latest string `json:"latest"`
}

// versionState is the parsed policy; latestSet tells whether Latest was
// given or is the default.
type versionState struct {
	min       payload.Version // zero: accept all
	latest    payload.Version
	latestSet bool
}

func (v *versionState) export() Versions {
	out := Versions{Latest: v.latest.String()}
	if !v.min.IsZero() {
		out.Min = v.min.String()
	}
	return out
}

// parseVersions parses a policy; errors name the field ("min", "latest").
func parseVersions(v Versions) (*versionState, error) {
	st := &versionState{}
	if v.Min != "" {
		m, err := payload.ParseVersion(v.Min)
		if err != nil {
			return nil, fmt.Errorf("%w: min: %q is not a version such as 2.3000.1045649367", ErrBadVersion, v.Min)
		}
		st.min = m
	}
	if v.Latest != "" {
		l, err := payload.ParseVersion(v.Latest)
		if err != nil {
			return nil, fmt.Errorf("%w: latest: %q is not a version such as 2.3000.1045649367", ErrBadVersion, v.Latest)
		}
		st.latest, st.latestSet = l, true
	}
	if !st.latestSet {
		st.latest = st.min
		if st.min.IsZero() {
			st.latest = payload.DefaultVersion()
		}
	}
	return st, nil
}

// Versions returns the current version policy, Latest with its default
// applied.
func (s *Server) Versions() Versions { return s.versions.Load().export() }

// SetVersions replaces the version policy; it applies to handshakes that
// complete afterwards. A malformed version is ErrBadVersion naming the field.
func (s *Server) SetVersions(v Versions) error {
	st, err := parseVersions(v)
	if err != nil {
		return err
	}
	s.versions.Store(st)
	return nil
}

// outdated reports whether a ClientPayload's userAgent.appVersion is below
// the minimum, and the version it carried (0.0.0 when absent).
func (s *Server) outdated(cp *waproto.ClientPayload) (bool, payload.Version) {
	av := cp.GetUserAgent().GetAppVersion()
	got := payload.Version{Primary: av.GetPrimary(), Secondary: av.GetSecondary(), Tertiary: av.GetTertiary()}
	st := s.versions.Load()
	return !st.min.IsZero() && got.Compare(st.min) < 0, got
}

// swJS returns a service-worker script shaped like WhatsApp Web's
// https://web.whatsapp.com/sw.js: a long first code line assigning
// self.__swData from JSON.parse of a JS string literal (so every quote in
// the JSON is escaped: \"client_revision\":N), whose
// dynamic_data.SiteData carries server_revision, client_revision and
// __spin_r, all N (the tertiary part of latest), then the importScripts
// block. Parsers written against the real file find N:
//
//   - Baileys' fetchLatestWaWebVersion: /\\?"client_revision\\?":\s*(\d+)/;
//   - whatsapp-rust's parse_sw_js: the first digits after the first
//     "client_revision" (it occurs once);
//   - decoding the string literal, then the JSON, then
//     dynamic_data.SiteData.client_revision.
//
// whatsmeow's GetLatestVersion reads the HTML of https://web.whatsapp.com/
// instead, with the unescaped regexp "client_revision":(\d+), which does
// not match the escaped form of sw.js (nor of this file).
func swJS(latest payload.Version, now time.Time) string {
	rev := strconv.FormatUint(uint64(latest.Tertiary), 10)
	// The JSON carried by the script; slashes escaped as the real file does.
	data := `{"dynamic_data":{"dynamic_modules":{"cr:375":{"__rc":["WAWebFtsLightClient",null]},` +
		`"cr:1126":{"__rc":["TimeSliceSham",null]},"cr:4122":{"__rc":[null,null]},` +
		`"IntlCurrentLocale":{"code":"en_US"},` +
		`"WAWebSwResources":{"wa_default_notification_icon":"https:\/\/static.whatsapp.net\/rsrc.php\/v4\/yX\/r\/emulator.png"}},` +
		`"SiteData":{"server_revision":` + rev + `,"client_revision":` + rev +
		`,"push_phase":"C3","pkg_cohort":"BP:DEFAULT","haste_session":"20400.BP:DEFAULT.2.0...0","pr":1,` +
		`"manifest_base_uri":"https:\/\/static.whatsapp.net","manifest_origin":null,"manifest_version_prefix":null,` +
		`"be_one_ahead":false,"is_rtl":false,"is_experimental_tier":false,"is_jit_warmed_up":true,` +
		`"hsi":"7000000000000000000","semr_host_bucket":"3","bl_hash_version":2,"comet_env":0,"wbloks_env":false,` +
		`"ef_page":null,"compose_bootloads":false,"spin":4,"__spin_r":` + rev +
		`,"__spin_b":"trunk","__spin_t":` + strconv.FormatInt(now.Unix(), 10) + `,"vip":"127.0.0.1"}},` +
		`"hsdp":{"gkxData":{"4112":{"result":false,"hash":null},"26258":{"result":true,"hash":null}},` +
		`"justknobxData":{"371":{"r":true},"1617":{"r":165}}}}`
	lit, err := json.Marshal(data) // a JSON string literal is a valid JS string literal
	if err != nil {
		panic(err) // a string always marshals
	}
	var b strings.Builder
	b.WriteString("__DEV__=0;/*FB_PKG_DELIM*/\n")
	b.WriteString("self.__swData=JSON.parse(/*BTDS*/")
	b.Write(lit)
	b.WriteString(");\n\n")
	b.WriteString(`      if (self.trustedTypes && self.trustedTypes.createPolicy) {
        const escapeScriptURLPolicy = self.trustedTypes.createPolicy("workerPolicy", {
          createScriptURL: url => url
        });
        importScripts(escapeScriptURLPolicy.createScriptURL("https:\/\/static.whatsapp.net\/rsrc.php\/v4\/yq\/r\/emulator-sw.js"));
      } else {
         importScripts("https:\/\/static.whatsapp.net\/rsrc.php\/v4\/yq\/r\/emulator-sw.js");
      }
`)
	return b.String()
}

package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/wafleet/wafleet/waproto"
	"github.com/wafleet/wafleet/wire/payload"
)

// ParsedVersion returns client.version, or payload.DefaultVersion() when it
// is empty.
func (c Client) ParsedVersion() (payload.Version, error) {
	if c.Version == "" {
		return payload.DefaultVersion(), nil
	}
	v, err := payload.ParseVersion(c.Version)
	if err != nil || v.Primary != 2 || v.Secondary != 3000 || v.Tertiary == 0 {
		return payload.Version{}, keyError("client.version", fmt.Sprintf("%q is not a WhatsApp Web version 2.3000.N (leave it empty for the built-in %s)", c.Version, payload.DefaultVersion()))
	}
	return v, nil
}

// PlatformType returns client.platform as a DeviceProps platform type (the
// name is matched without regard to case).
func (c Client) PlatformType() (waproto.DeviceProps_PlatformType, error) {
	if n, ok := waproto.DeviceProps_PlatformType_value[strings.ToUpper(c.Platform)]; ok {
		return waproto.DeviceProps_PlatformType(n), nil
	}
	return 0, keyError("client.platform", fmt.Sprintf("%q is not one of %s", c.Platform, strings.Join(PlatformNames(), ", ")))
}

// PlatformNames lists the valid client.platform values in the order of
// their numbers.
func PlatformNames() []string {
	nums := make([]int32, 0, len(waproto.DeviceProps_PlatformType_name))
	for n := range waproto.DeviceProps_PlatformType_name {
		nums = append(nums, n)
	}
	slices.Sort(nums)
	names := make([]string, len(nums))
	for i, n := range nums {
		names[i] = strings.ToLower(waproto.DeviceProps_PlatformType_name[n])
	}
	return names
}

// DeviceName is the name the phone shows for account a's linked device:
// its device_name, or client.os_name.
func (c *Config) DeviceName(a Account) string {
	if a.DeviceName != "" {
		return a.DeviceName
	}
	return c.Client.OSName
}

func (c Client) validate() error {
	if _, err := c.ParsedVersion(); err != nil {
		return err
	}
	if c.VersionURL != "" {
		u, err := url.Parse(c.VersionURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return keyError("client.version_url", fmt.Sprintf("%q is not an http:// or https:// URL (leave it empty to turn fetching off)", c.VersionURL))
		}
	}
	if c.OSName == "" {
		return keyError("client.os_name", "must not be empty")
	}
	if err := validateDeviceName("client.os_name", c.OSName); err != nil {
		return err
	}
	_, err := c.PlatformType()
	return err
}

// validateDeviceName checks a name the phone shows: bounded, valid UTF-8,
// no control characters.
func validateDeviceName(key, name string) error {
	if p := deviceNameProblem(name); p != "" {
		return keyError(key, p)
	}
	return nil
}

// deviceNameProblem says what is wrong with a name the phone shows, or "".
func deviceNameProblem(name string) string {
	switch {
	case len(name) > payload.MaxOSLen:
		return fmt.Sprintf("is longer than %d bytes", payload.MaxOSLen)
	case !utf8.ValidString(name):
		return "is not valid UTF-8"
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return "contains a control character"
	case strings.TrimSpace(name) != name:
		return "starts or ends with white space"
	}
	return ""
}

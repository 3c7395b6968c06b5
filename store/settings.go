package store

import "fmt"

// Limits of fleet-wide settings (LoadSetting, SaveSetting).
const (
	MaxSettingNameLen  = 64       // 1..64 bytes of [a-z0-9._-]
	MaxSettingValueLen = 4 * 1024 // any bytes, possibly none
)

// ValidateSettingName checks a setting name: 1..MaxSettingNameLen bytes of
// [a-z0-9._-]. Errors wrap ErrInvalidSetting and do not echo the name.
func ValidateSettingName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty name", ErrInvalidSetting)
	}
	if len(name) > MaxSettingNameLen {
		return fmt.Errorf("%w: name is %d bytes long, at most %d allowed", ErrInvalidSetting, len(name), MaxSettingNameLen)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: name byte %d is not a lower-case letter, digit, '.', '_' or '-'", ErrInvalidSetting, i)
		}
	}
	return nil
}

// ValidateSetting checks a setting name and value (at most
// MaxSettingValueLen bytes). Errors wrap ErrInvalidSetting.
func ValidateSetting(name, value string) error {
	if err := ValidateSettingName(name); err != nil {
		return err
	}
	if len(value) > MaxSettingValueLen {
		return fmt.Errorf("%w: value of %q is %d bytes long, at most %d allowed", ErrInvalidSetting, name, len(value), MaxSettingValueLen)
	}
	return nil
}

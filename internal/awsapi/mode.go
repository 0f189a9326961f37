package awsapi

import "fmt"

// Mode is how a Session obtains its AWS credentials. The zero value is
// DefaultChain.
type Mode int

const (
	// DefaultChain uses the SDK's standard chain: environment variables,
	// shared config and profile, web identity, container or instance role.
	DefaultChain Mode = iota
	// Keys signs with an IAM user's long-lived access key and secret.
	Keys
	// KeysRole uses the access key and secret only to call STS AssumeRole on
	// the base role, and signs with the role's temporary credentials.
	KeysRole
	// CrossAccount chains two roles: the default chain assumes the base role,
	// and that session assumes the target role, passing the external id.
	CrossAccount
)

// String names the mode as validate --check prints it.
func (m Mode) String() string {
	switch m {
	case DefaultChain:
		return "default-chain"
	case Keys:
		return "access-key"
	case KeysRole:
		return "assume-role"
	case CrossAccount:
		return "cross-account"
	default:
		return fmt.Sprintf("Mode(%d)", int(m))
	}
}

// Package auth will hold proxyless's security: JWT validation with rotating keys, TLS
// origination and termination with certificate reload, and mTLS peer authorization. It is not
// written yet; see the project's open issues.
package auth

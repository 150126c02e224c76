package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Files written by `k8s-lite certs --dir D` (all PEM unless noted):
//
//	ca.crt, ca.key                          cluster CA (also signs CSRs via kube-controller-manager)
//	apiserver.crt, apiserver.key            serving cert: 127.0.0.1, ::1, localhost, kubernetes.default[.svc[.cluster.local]], 10.96.0.1
//	apiserver-kubelet-client.crt/.key       apiserver -> kubelet client cert (O=system:masters)
//	admin.crt, admin.key                    CN=kubernetes-admin, O=system:masters
//	controller-manager.crt/.key             CN=system:kube-controller-manager
//	scheduler.crt/.key                      CN=system:kube-scheduler
//	sa.key, sa.pub                          service-account token signing key pair (RSA 2048)
//	tokens.csv                              static token file: <admin token>,admin,admin,"system:masters"
//	admin.token                             the admin bearer token (plain text)
//	kubeconfig                              admin kubeconfig (bearer token), written once the server URL is known
//	admin-cert.kubeconfig                   admin kubeconfig (client certificate)
//	controller-manager.kubeconfig, scheduler.kubeconfig
//
// Existing files are kept, so restarting `up` on the same directory keeps the
// CA, the SA signing key (and thus every issued token) and the admin token.

const (
	serviceCIDR     = "10.96.0.0/12"
	kubernetesSvcIP = "10.96.0.1"
	clusterDomain   = "cluster.local"
)

type keyPair struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func cmdCerts(args []string) int {
	fs := flag.NewFlagSet("certs", flag.ExitOnError)
	dir := fs.String("dir", "", "output directory (required)")
	server := fs.String("server", "", "apiserver URL for the kubeconfigs (e.g. https://127.0.0.1:6443); kubeconfigs are skipped when empty")
	fs.Parse(args)
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "certs: --dir is required")
		return 2
	}
	if err := ensureCerts(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "certs:", err)
		return 1
	}
	if *server != "" {
		if err := writeKubeconfigs(*dir, *server); err != nil {
			fmt.Fprintln(os.Stderr, "certs:", err)
			return 1
		}
	}
	return 0
}

func ensureCerts(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ca, err := ensureCA(dir)
	if err != nil {
		return err
	}
	leaves := []struct {
		name   string
		cn     string
		orgs   []string
		server bool
	}{
		{"apiserver", "kube-apiserver", nil, true},
		{"apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"}, false},
		{"admin", "kubernetes-admin", []string{"system:masters"}, false},
		{"controller-manager", "system:kube-controller-manager", nil, false},
		{"scheduler", "system:kube-scheduler", nil, false},
	}
	for _, l := range leaves {
		if exists(filepath.Join(dir, l.name+".crt")) && exists(filepath.Join(dir, l.name+".key")) {
			continue
		}
		var ips []net.IP
		var dns []string
		if l.server {
			ips = []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback, net.ParseIP(kubernetesSvcIP)}
			dns = []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + clusterDomain}
		}
		if err := issueLeaf(dir, l.name, ca, l.cn, l.orgs, l.server, ips, dns); err != nil {
			return err
		}
	}
	if !exists(filepath.Join(dir, "sa.key")) || !exists(filepath.Join(dir, "sa.pub")) {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, "sa.key"), "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k), 0o600); err != nil {
			return err
		}
		pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
		if err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, "sa.pub"), "PUBLIC KEY", pub, 0o644); err != nil {
			return err
		}
	}
	if !exists(filepath.Join(dir, "tokens.csv")) || !exists(filepath.Join(dir, "admin.token")) {
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		tok := hex.EncodeToString(b)
		if err := os.WriteFile(filepath.Join(dir, "tokens.csv"), []byte(tok+",admin,admin,\"system:masters\"\n"), 0o600); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "admin.token"), []byte(tok+"\n"), 0o600); err != nil {
			return err
		}
	}
	return nil
}

func ensureCA(dir string) (*keyPair, error) {
	crtPath, keyPath := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if exists(crtPath) && exists(keyPath) {
		return loadKeyPair(crtPath, keyPath)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "k8s-lite-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	if err := writeKey(keyPath, key); err != nil {
		return nil, err
	}
	if err := writePEM(crtPath, "CERTIFICATE", der, 0o644); err != nil {
		return nil, err
	}
	cert, _ := x509.ParseCertificate(der)
	return &keyPair{cert, key}, nil
}

func issueLeaf(dir, name string, ca *keyPair, cn string, orgs []string, server bool, ips []net.IP, dns []string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn, Organization: orgs},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(5 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		IPAddresses:  ips,
		DNSNames:     dns,
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return err
	}
	if err := writeKey(filepath.Join(dir, name+".key"), key); err != nil {
		return err
	}
	return writePEM(filepath.Join(dir, name+".crt"), "CERTIFICATE", der, 0o644)
}

// cmdNodeKubeconfig issues a client certificate for a node agent
// (CN=system:node:NAME, O=system:nodes: the identity the Node authorizer and
// the NodeRestriction admission plugin expect) and writes a kubeconfig for it.
func cmdNodeKubeconfig(args []string) int {
	fs := flag.NewFlagSet("node-kubeconfig", flag.ExitOnError)
	dir := fs.String("dir", "", "k8s-lite directory holding ca.crt/ca.key (required)")
	name := fs.String("name", "", "node name (required)")
	server := fs.String("server", "", "apiserver URL (default: read from DIR/apiserver-url)")
	out := fs.String("out", "", "kubeconfig path (default DIR/node-NAME.kubeconfig)")
	fs.Parse(args)
	if *dir == "" || *name == "" {
		fmt.Fprintln(os.Stderr, "node-kubeconfig: --dir and --name are required")
		return 2
	}
	if *server == "" {
		b, err := os.ReadFile(filepath.Join(*dir, "apiserver-url"))
		if err != nil {
			fmt.Fprintln(os.Stderr, "node-kubeconfig: --server not given and", err)
			return 1
		}
		*server = strings.TrimSpace(string(b))
	}
	if *out == "" {
		*out = filepath.Join(*dir, "node-"+*name+".kubeconfig")
	}
	ca, err := loadKeyPair(filepath.Join(*dir, "ca.crt"), filepath.Join(*dir, "ca.key"))
	if err == nil {
		err = issueLeaf(*dir, "node-"+*name, ca, "system:node:"+*name, []string{"system:nodes"}, false, nil, nil)
	}
	if err == nil {
		err = writeCertKubeconfig(*out, *dir, *server, "system:node:"+*name, "node-"+*name)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "node-kubeconfig:", err)
		return 1
	}
	fmt.Println(*out)
	return 0
}

func writeKubeconfigs(dir, server string) error {
	tok, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		return err
	}
	ca, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return err
	}
	admin := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: k8s-lite
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: k8s-lite
  context:
    cluster: k8s-lite
    user: admin
    namespace: default
current-context: k8s-lite
`, server, base64.StdEncoding.EncodeToString(ca), strings.TrimSpace(string(tok)))
	if err := writeFileAtomic(filepath.Join(dir, "kubeconfig"), []byte(admin), 0o600); err != nil {
		return err
	}
	for _, c := range []struct{ file, user, pair string }{
		{"admin-cert.kubeconfig", "kubernetes-admin", "admin"},
		{"controller-manager.kubeconfig", "system:kube-controller-manager", "controller-manager"},
		{"scheduler.kubeconfig", "system:kube-scheduler", "scheduler"},
	} {
		if err := writeCertKubeconfig(filepath.Join(dir, c.file), dir, server, c.user, c.pair); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "apiserver-url"), []byte(server+"\n"), 0o644)
}

func writeCertKubeconfig(path, dir, server, user, pair string) error {
	read := func(n string) (string, error) {
		b, err := os.ReadFile(filepath.Join(dir, n))
		return base64.StdEncoding.EncodeToString(b), err
	}
	ca, err1 := read("ca.crt")
	crt, err2 := read(pair + ".crt")
	key, err3 := read(pair + ".key")
	if err := errors.Join(err1, err2, err3); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: k8s-lite
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %s
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: k8s-lite
  context:
    cluster: k8s-lite
    user: %s
current-context: k8s-lite
`, server, ca, user, crt, key, user)
	return writeFileAtomic(path, []byte(cfg), 0o600)
}

func loadKeyPair(crtPath, keyPath string) (*keyPair, error) {
	cb, err := os.ReadFile(crtPath)
	if err != nil {
		return nil, err
	}
	kb, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	cblk, _ := pem.Decode(cb)
	kblk, _ := pem.Decode(kb)
	if cblk == nil || kblk == nil {
		return nil, fmt.Errorf("bad PEM in %s or %s", crtPath, keyPath)
	}
	cert, err := x509.ParseCertificate(cblk.Bytes)
	if err != nil {
		return nil, err
	}
	key, err := x509.ParseECPrivateKey(kblk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	return &keyPair{cert, key}, nil
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "EC PRIVATE KEY", der, 0o600)
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	return writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

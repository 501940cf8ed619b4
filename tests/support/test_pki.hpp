// A throwaway PKI for TLS tests, made with the OpenSSL C API (no `openssl` command): a CA (key and
// self-signed certificate) and a server key and certificate signed by it, valid for DNS:localhost
// and IP:127.0.0.1, written as PEM files into a directory. P-256 keys: fast to generate.
#pragma once

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

namespace bmxtest {

struct TestPki {
  std::string ca_cert;      // PEM: the CA certificate (what a client trusts)
  std::string ca_key;       // PEM: the CA key
  std::string server_cert;  // PEM: the server certificate, signed by the CA
  std::string server_key;   // PEM: its key
};

namespace pki_detail {

struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct CertFree {
  void operator()(X509* x) const { X509_free(x); }
};
using Key = std::unique_ptr<EVP_PKEY, KeyFree>;
using Cert = std::unique_ptr<X509, CertFree>;

inline void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("test PKI: ") + what + " failed");
}

inline void add_ext(X509* cert, X509V3_CTX* ctx, int nid, const char* value) {
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, ctx, nid, value);
  check(ext != nullptr, "X509V3_EXT_conf_nid");
  const int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  check(ok == 1, "X509_add_ext");
}

// A certificate for `key` named `cn`, signed by (issuer, issuer_key), or self-signed when
// `issuer` is null (the CA).
inline Cert make_cert(EVP_PKEY* key, const char* cn, long serial, X509* issuer,
                      EVP_PKEY* issuer_key, const char* alt_names = "DNS:localhost,IP:127.0.0.1") {
  Cert x(X509_new());
  check(x != nullptr, "X509_new");
  X509* c = x.get();
  check(X509_set_version(c, 2) == 1, "X509_set_version");
  check(ASN1_INTEGER_set(X509_get_serialNumber(c), serial) == 1, "serial");
  check(X509_gmtime_adj(X509_getm_notBefore(c), -3600) != nullptr, "notBefore");
  check(X509_gmtime_adj(X509_getm_notAfter(c), 24 * 3600) != nullptr, "notAfter");
  check(X509_set_pubkey(c, key) == 1, "X509_set_pubkey");
  X509_NAME* name = X509_get_subject_name(c);
  check(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                   reinterpret_cast<const unsigned char*>(cn), -1, -1, 0) == 1,
        "subject");
  const bool ca = issuer == nullptr;
  check(X509_set_issuer_name(c, ca ? name : X509_get_subject_name(issuer)) == 1, "issuer");
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, ca ? c : issuer, c, nullptr, nullptr, 0);
  add_ext(c, &ctx, NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
  add_ext(c, &ctx, NID_key_usage,
          ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature,keyEncipherment");
  add_ext(c, &ctx, NID_subject_key_identifier, "hash");
  if (!ca) {
    add_ext(c, &ctx, NID_authority_key_identifier, "keyid:always");
    add_ext(c, &ctx, NID_ext_key_usage, "serverAuth");
    add_ext(c, &ctx, NID_subject_alt_name, alt_names);
  }
  check(X509_sign(c, ca ? key : issuer_key, EVP_sha256()) > 0, "X509_sign");
  return x;
}

inline void write_key(const std::string& path, EVP_PKEY* key) {
  FILE* f = std::fopen(path.c_str(), "w");
  check(f != nullptr, "open key file");
  const int ok = PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
  check(ok == 1, "PEM_write_PrivateKey");
}

inline void write_cert(const std::string& path, X509* cert) {
  FILE* f = std::fopen(path.c_str(), "w");
  check(f != nullptr, "open certificate file");
  const int ok = PEM_write_X509(f, cert);
  std::fclose(f);
  check(ok == 1, "PEM_write_X509");
}

}  // namespace pki_detail

// Creates the CA and the server certificate under `dir` (which must exist). The server
// certificate names `alt_names` (OpenSSL's subjectAltName syntax). Throws std::runtime_error
// naming the step that failed.
inline TestPki make_test_pki(const std::filesystem::path& dir,
                             const std::string& alt_names = "DNS:localhost,IP:127.0.0.1") {
  using namespace pki_detail;
  Key ca_key(EVP_EC_gen("P-256"));
  check(ca_key != nullptr, "CA key generation");
  Key server_key(EVP_EC_gen("P-256"));
  check(server_key != nullptr, "server key generation");
  const Cert ca = make_cert(ca_key.get(), "bitmex-shm test CA", 1, nullptr, nullptr);
  const Cert server =
      make_cert(server_key.get(), "localhost", 2, ca.get(), ca_key.get(), alt_names.c_str());
  TestPki p{(dir / "ca.pem").string(), (dir / "ca.key").string(), (dir / "server.pem").string(),
            (dir / "server.key").string()};
  write_cert(p.ca_cert, ca.get());
  write_key(p.ca_key, ca_key.get());
  write_cert(p.server_cert, server.get());
  write_key(p.server_key, server_key.get());
  return p;
}

}  // namespace bmxtest

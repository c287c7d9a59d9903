#!/usr/bin/env python3
"""An IdP the project did not write, for the acceptance tests of the console's login: pysaml2 (from
PyPI) signing and encrypting with xmlsec1 (Debian's), in the shapes real IdPs send.

    idp.py metadata  CONFIG              the IdP's metadata, for the console's auth.idp_metadata
    idp.py respond   CONFIG SHAPE REQ    a base64 SAMLResponse answering the AuthnRequest REQ (the
                                         SAMLRequest parameter of the console's redirect, as sent)
    idp.py serve     CONFIG SHAPE PORT   the IdP on http://localhost:PORT for a browser: /sso answers
                                         with a page that posts the response to the ACS, /slo says
                                         the person is logged out at the IdP

CONFIG is a JSON file: entity_id, sso_url, key, cert (PEM paths), sp_metadata (a path to the
console's /saml/metadata) and user (eppn, mail, display_name, affiliations). SHAPE is one of
  adfs                signed assertion, unsigned response, no encryption
  adfs-encrypted      signed assertion, encrypted, unsigned response
  shibboleth          signed response, encrypted unsigned assertion (Shibboleth IdP's default)
  signed-both         signed response and signed assertion, no encryption
"""

import json
import os
import sys

import saml2
import saml2.entity
import saml2.sigver
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import NAME_FORMAT_URI, NAMEID_FORMAT_TRANSIENT, NameID
from saml2.server import Server

XMLSEC = "/usr/bin/xmlsec1"
AES256_CBC = "http://www.w3.org/2001/04/xmlenc#aes256-cbc"

SHAPES = {
    "adfs": dict(sign_response=False, sign_assertion=True, encrypt_assertion=False),
    "adfs-encrypted": dict(sign_response=False, sign_assertion=True, encrypt_assertion=True),
    "shibboleth": dict(sign_response=True, sign_assertion=False, encrypt_assertion=True),
    "signed-both": dict(sign_response=True, sign_assertion=True, encrypt_assertion=False),
}


def use_aes():
    """pysaml2 always encrypts with 3DES (a des-192 session key); Shibboleth and ADFS use AES, and
    the console's metadata offers only AES. Same xmlsec1 call, an AES session key."""
    template = saml2.entity.pre_encryption_part

    def aes_template(**kwargs):
        return template(msg_enc=AES256_CBC, **kwargs)

    saml2.entity.pre_encryption_part = aes_template
    encrypt = saml2.sigver.CryptoBackendXmlSec1.encrypt_assertion

    def aes_encrypt(self, statement, enc_key, template, _key_type="des-192", *args, **kwargs):
        return encrypt(self, statement, enc_key, template, "aes-256", *args, **kwargs)

    saml2.sigver.CryptoBackendXmlSec1.encrypt_assertion = aes_encrypt


def server(config):
    conf = IdPConfig()
    conf.load(
        {
            "entityid": config["entity_id"],
            "xmlsec_binary": XMLSEC,
            "key_file": config["key"],
            "cert_file": config["cert"],
            # The SP is known once the console serves its metadata (not needed for the IdP's own).
            "metadata": {"local": [config["sp_metadata"]]} if os.path.exists(config["sp_metadata"]) else {},
            "service": {
                "idp": {
                    "endpoints": {
                        "single_sign_on_service": [(config["sso_url"], BINDING_HTTP_REDIRECT)],
                        "single_logout_service": [(config["slo_url"], BINDING_HTTP_REDIRECT)],
                    },
                    "name_id_format": [NAMEID_FORMAT_TRANSIENT],
                    "policy": {
                        "default": {
                            "lifetime": {"minutes": 5},
                            "attribute_restrictions": None,
                            "name_form": NAME_FORMAT_URI,
                        }
                    },
                }
            },
        }
    )
    return conf, Server(config=conf)


def respond(config, shape, saml_request):
    _, idp = server(config)
    request = idp.parse_authn_request(saml_request, BINDING_HTTP_REDIRECT).message
    sp = request.issuer.text
    destination = idp.metadata.assertion_consumer_service(sp, binding=BINDING_HTTP_POST)[0]["location"]
    user = config["user"]
    identity = {
        "eduPersonPrincipalName": [user["eppn"]],
        "mail": [user["mail"]],
        "displayName": [user["display_name"]],
        "eduPersonScopedAffiliation": user["affiliations"],
    }
    response = idp.create_authn_response(
        identity,
        in_response_to=request.id,
        destination=destination,
        sp_entity_id=sp,
        name_id=NameID(format=NAMEID_FORMAT_TRANSIENT, text=saml2.s_utils.rndstr(32)),
        authn={"class_ref": saml2.saml.AUTHN_PASSWORD_PROTECTED, "authn_auth": config["entity_id"]},
        sign_alg=saml2.xmldsig.SIG_RSA_SHA256,
        digest_alg=saml2.xmldsig.DIGEST_SHA256,
        **SHAPES[shape],
    )
    import base64

    return base64.b64encode(str(response).encode()).decode()


def serve(config, shape, port):
    import html
    from http.server import BaseHTTPRequestHandler, HTTPServer
    from urllib.parse import parse_qs, urlparse

    class Handler(BaseHTTPRequestHandler):
        def page(self, body):
            data = f"<!DOCTYPE html><html><body>{body}</body></html>".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            url = urlparse(self.path)
            query = parse_qs(url.query)
            if url.path == "/sso":
                _, idp = server(config)
                request = idp.parse_authn_request(query["SAMLRequest"][0], BINDING_HTTP_REDIRECT).message
                response = respond(config, shape, query["SAMLRequest"][0])
                acs = html.escape(request.assertion_consumer_service_url)
                self.page(
                    f'<form id="f" method="post" action="{acs}">'
                    f'<input type="hidden" name="SAMLResponse" value="{html.escape(response)}"/>'
                    '<button type="submit" id="continue">Continue</button></form>'
                    '<script>document.getElementById("f").submit()</script>'
                )
            elif url.path == "/slo":
                ok = "SAMLRequest" in query
                self.page(f'<h1 id="idp-logged-out">{"Logged out at the IdP" if ok else "No request"}</h1>')
            else:
                self.send_error(404)

        def log_message(self, *args):
            pass

    HTTPServer(("127.0.0.1", int(port)), Handler).serve_forever()


def main(argv):
    use_aes()
    command, config_path = argv[1], argv[2]
    with open(config_path) as f:
        config = json.load(f)
    if command == "metadata":
        conf, _ = server(config)
        print(create_metadata_string(None, config=conf, valid=24 * 365).decode())
    elif command == "respond":
        print(respond(config, argv[3], argv[4]))
    elif command == "serve":
        serve(config, argv[3], argv[4])
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv)

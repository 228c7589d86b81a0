// Command notesign exercises golang.org/x/mod/sumdb/note for Fiat's interop tests.
//
//	notesign -skey 'PRIVATE+KEY+name+hexid+base64' < text    # print note.Sign output
//	notesign -vkey 'name+hexid+base64' < signed-note         # note.Open; print JSON
//	notesign -generate name                                  # note.GenerateKey; print JSON
//
// It imports only the standard library and golang.org/x/mod/sumdb/note.
// Failures go to stderr as "notesign: FAIL ..." with exit status 1.
package main

import (
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"golang.org/x/mod/sumdb/note"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "notesign: FAIL "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	skey := flag.String("skey", "", "sign stdin with this signer key and print the signed note")
	vkey := flag.String("vkey", "", "open the signed note on stdin with this verifier key")
	generate := flag.String("generate", "", "generate a key pair with this name")
	flag.Parse()
	enc := json.NewEncoder(os.Stdout)
	switch {
	case *generate != "":
		s, v, err := note.GenerateKey(rand.Reader, *generate)
		if err != nil {
			fail("note.GenerateKey: %v", err)
		}
		_ = enc.Encode(map[string]string{"skey": s, "vkey": v})
	case *skey != "":
		signer, err := note.NewSigner(*skey)
		if err != nil {
			fail("note.NewSigner: %v", err)
		}
		text, err := io.ReadAll(os.Stdin)
		if err != nil {
			fail("reading stdin: %v", err)
		}
		msg, err := note.Sign(&note.Note{Text: string(text)}, signer)
		if err != nil {
			fail("note.Sign: %v", err)
		}
		os.Stdout.Write(msg)
	case *vkey != "":
		verifier, err := note.NewVerifier(*vkey)
		if err != nil {
			fail("note.NewVerifier: %v", err)
		}
		msg, err := io.ReadAll(os.Stdin)
		if err != nil {
			fail("reading stdin: %v", err)
		}
		n, err := note.Open(msg, note.VerifierList(verifier))
		if err != nil {
			fail("note.Open: %v", err)
		}
		sigs := []map[string]interface{}{}
		for _, s := range n.Sigs {
			sigs = append(sigs, map[string]interface{}{"name": s.Name, "hash": fmt.Sprintf("%08x", s.Hash), "base64": s.Base64})
		}
		_ = enc.Encode(map[string]interface{}{
			"name":       verifier.Name(),
			"key_hash":   fmt.Sprintf("%08x", verifier.KeyHash()),
			"text":       n.Text,
			"sigs":       sigs,
			"unverified": len(n.UnverifiedSigs),
		})
	default:
		fmt.Fprintln(os.Stderr, "notesign: usage: notesign -skey KEY | -vkey KEY | -generate NAME")
		os.Exit(2)
	}
}

// Sends two messages with Go's net/smtp.SendMail, run by tests/default_clients.rs: one that
// failmail accepts, one to a magic address that it refuses.
//
// usage: go run tests/go/sendmail.go PORT
//
// SendMail upgrades with STARTTLS whenever the server offers it and then checks the certificate
// against the system's roots. Prints "DELIVERED" and "REFUSED <code> <text>"; exits non-zero on
// anything else (a TLS or connection error included).
package main

import (
	"errors"
	"fmt"
	"net/smtp"
	"net/textproto"
	"os"
)

func main() {
	addr := "127.0.0.1:" + os.Args[1]
	message := []byte("From: app@example.org\r\nSubject: from Go\r\n\r\nhello from net/smtp\r\n")
	if err := smtp.SendMail(addr, nil, "app@example.org", []string{"bob@dest.example"}, message); err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Println("DELIVERED")
	err := smtp.SendMail(addr, nil, "app@example.org", []string{"user_unknown@example.com"}, message)
	var refusal *textproto.Error
	if !errors.As(err, &refusal) {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Printf("REFUSED %d %s\n", refusal.Code, refusal.Msg)
}

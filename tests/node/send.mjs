// Sends two messages with nodemailer's default options, run by tests/default_clients.rs:
// one that failmail accepts, one to a magic address that it refuses.
//
// usage: node tests/node/send.mjs PORT
//
// Default options: no `secure`, no `tls` settings, so nodemailer upgrades with STARTTLS whenever
// the server offers it and then checks the certificate against the system's roots. Prints
// "DELIVERED <the server's reply>" and "REFUSED <code> <the server's reply>"; exits non-zero on
// anything else (a TLS or connection error included).
import nodemailer from "nodemailer";

const port = Number(process.argv[2]);
const transport = nodemailer.createTransport({ host: "127.0.0.1", port });
const message = (to) => ({
  from: "app@example.org",
  to,
  subject: "from nodemailer",
  text: "hello from nodemailer\n",
});

try {
  const info = await transport.sendMail(message("bob@dest.example"));
  console.log(`DELIVERED ${info.response}`);
} catch (error) {
  console.log(`ERROR ${error.code} ${error.message}`);
  process.exit(1);
}
try {
  await transport.sendMail(message("user_unknown@example.com"));
  console.log("ACCEPTED the magic address");
  process.exit(1);
} catch (error) {
  if (!error.responseCode) {
    console.log(`ERROR ${error.code} ${error.message}`);
    process.exit(1);
  }
  console.log(`REFUSED ${error.responseCode} ${error.response}`);
}

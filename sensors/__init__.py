"""The sensors daemon: door contact, PIR motion and a two-beam people counter on gpiozero."""

"""snf.nfdhcpd: the NFQUEUE DHCP/DHCPv6/RA/NS responder; owns the binding file format."""

"""Links: commune interconnections read from IF-MIB, seen from the commune's side."""

"""stigwatch: checks Exchange Send connectors against DISA STIG EX19-ED-000236."""

"""ESC/POS receipt and kitchen printers (``kind = "escpos"``).

``protocol`` decodes DLE EOT / ASB status and makes ticket text safe and width-aware,
``driver`` opens a printer by port URL and asks its status, ``render`` turns a job document into
ESC/POS bytes, ``simulator`` is a virtual printer. The print service (``gateway.printing``)
owns the printers at run time; ``SPEC`` validates their options.
"""

from __future__ import annotations

from devices.base import DriverSpec
from devices.escpos.config import validate_printers
from gateway.core.options import OptionSpec

SPEC = DriverSpec(
    kind="escpos",
    description="ESC/POS printer on tcp://HOST:9100, usb://VID:PID, file:///dev/usb/lp0 or a serial port",
    factory=None,  # the print service (gateway.printing) runs printers
    check_all=validate_printers,
    needs_port=True,
    options={
        "station": OptionSpec("str", "", "Station this printer serves (kitchen, bar, cashier...); jobs for a "
                              "station go to its first printer."),
        "backup": OptionSpec("str", "", "Id of the printer that takes this printer's waiting jobs when it "
                             "has been unavailable longer than failover_after."),
        "failover_after": OptionSpec("duration", "60s", "How long the printer may be unavailable with jobs "
                                     "waiting before they move to the backup."),
        "encoding": OptionSpec("enum:gb18030|gbk|big5|cp437|cp850|cp858|cp866", "gb18030",
                               "Text encoding of the printer: gb18030/gbk/big5 (Chinese double-byte mode) "
                               "or a single-byte code page."),
        "width": OptionSpec("int", 48, "Characters per line in the normal font: 48 for 80 mm paper, "
                            "32 for 58 mm (a Chinese character takes two)."),
        "cut": OptionSpec("bool", True, "Cut the paper after each job (false: feed only, for printers "
                          "without a cutter)."),
        "status_timeout": OptionSpec("duration", "2s", "How long to wait for an answer to a DLE EOT status "
                                     "request before the printer counts as offline."),
        "confirm_timeout": OptionSpec("duration", "30s", "How long to wait after a job for the status that "
                                      "confirms it (the printer answers once it has taken the job's bytes)."),
        "poll": OptionSpec("duration", "1s", "How often to ask the status while jobs wait for a fault to be "
                           "fixed."),
        "status_interval": OptionSpec("duration", "30s", "How often to ask the status of an idle printer."),
        "max_attempts": OptionSpec("int", 5, "Sends without confirmation before a job is marked failed (each "
                                   "resend carries a REPRINT banner)."),
        "verify": OptionSpec("bool", True, "Ask DLE EOT status before and after each job. false only for "
                             "printers that never answer it: a job then counts as printed once its bytes are "
                             "written, and paper out or cover open cannot be seen."),
        "baudrate": OptionSpec("int", 9600, "Baud rate of a serial printer."),
    },
)

import sys

from model.commands import main

sys.exit(main())

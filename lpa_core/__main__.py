from lpa_core.cli import main

raise SystemExit(main())

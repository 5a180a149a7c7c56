from trading_bot.cli import main

raise SystemExit(main())
